"""Single-image model latency, PyTorch vs ONNX Runtime, side by side on the same threads.

Usage:
    python bench/onnx_latency.py [--checkpoint models/triage-mnv3s.pt] [--onnx F.onnx] [--repeats 200]
                                 [--threads 2] [--block 20] [--block-warmup 10] [--out results/onnx_latency.json]

Times what each engine's ``model_outputs`` does for one photo (network, calibrated softmax, OOD score; the
photo is decoded and preprocessed once, outside the timing), the same way ``bench/latency.py`` times PyTorch's
model step (``triage.research.step_timing``): consecutive calls after a warm-up, PyTorch and ONNX Runtime
alternating in blocks of 20 so that both see the same machine load. (Alternating call by call inflated
PyTorch's median 2.6-fold: each call then started against ONNX Runtime's still-spinning threads.) Exports the
checkpoint to a temporary file unless ``--onnx`` is given. Reports median, p90, p95 and mean in milliseconds;
check ``load_average`` before comparing runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from triage.inference.engine import DEFAULT_MODEL, Triage
from triage.research.step_timing import benchmark_input, summary_ms, time_side_by_side


def measure(
    checkpoint: str | Path, onnx_path: str | Path | None, repeats: int, threads: int, block: int = 20, warmup: int = 10
) -> dict:
    """Export if needed, then time both engines on one generated photo; returns the result dict."""
    import onnxruntime

    from triage.inference.onnx_engine import OnnxTriage

    torch_engine = Triage.load(checkpoint, threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_path is None:
            from triage.release.export import export_onnx

            onnx_path = Path(tmp) / "model.onnx"
            export_onnx(checkpoint, onnx_path, check=False)
        onnx_engine = OnnxTriage.load(onnx_path, threads=threads)
        torch.set_num_threads(threads)  # loading may have reset it; both sides get the same number
        x = benchmark_input(torch_engine)
        p_t, _ = torch_engine.model_outputs(x)
        p_o, _ = onnx_engine.model_outputs(x)
        engines = {"pytorch": torch_engine, "onnxruntime": onnx_engine}
        times = time_side_by_side(engines, x, repeats, block, warmup)
    out = {
        "what": "single-image model latency: network + calibrated softmax + OOD score (model_outputs)",
        "checkpoint": str(checkpoint),
        "model_version": torch_engine.version,
        "arch": torch_engine.meta["arch"],
        "input": list(x.shape),
        "threads": threads,
        "repeats": repeats,
        "block": block,
        "block_warmup": warmup,
        "pytorch": summary_ms(times["pytorch"]),
        "onnxruntime": summary_ms(times["onnxruntime"]),
        "max_abs_diff_probabilities": float(np.abs(p_t - p_o).max()),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out["speedup_median"] = round(out["pytorch"]["median_ms"] / out["onnxruntime"]["median_ms"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_MODEL))
    p.add_argument("--onnx", default=None, help="an existing export of the checkpoint (default: export to a temp file)")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--block", type=int, default=20, help="timed calls per engine before switching (default 20)")
    p.add_argument("--block-warmup", type=int, default=10, help="untimed calls after each switch (default 10)")
    p.add_argument("--out", default="results/onnx_latency.json")
    args = p.parse_args(argv)
    result = measure(args.checkpoint, args.onnx, args.repeats, args.threads, args.block, args.block_warmup)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
