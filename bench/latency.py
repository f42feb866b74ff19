"""End-to-end latency on this machine: decode + checks + model + decision, per photo.

Usage:
    python bench/latency.py [--model models/triage-mnv3s.pt] [--repeats 30] [--out results/latency.json]

Generates a 4000x3000 and a 1024 px JPEG (textured, skin-toned), runs each
through ``Triage.predict_bytes`` ``--repeats`` times on 2 threads (the 12 MP
one also with one tapped point: up to three crops judged; the photo rows in
round robin), and reports p50 / p95 in milliseconds plus the model step alone (network,
calibrated softmax, OOD score), timed exactly as ``bench/onnx_latency.py``
times it (``triage.research.step_timing``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time

import numpy as np
import torch
from PIL import Image

from triage.inference.decode import decode_upload
from triage.inference.engine import DEFAULT_MODEL, Triage
from triage.inference.tap import TAP_SCALES
from triage.research.step_timing import benchmark_input, summary_ms, time_model_step

#: Where the one-tap row taps (fractions of width and height): off-centre, as a client's tap usually is.
TAP_POINT = (0.35, 0.6)


def synthetic_photo(width: int, height: int, seed: int = 0) -> bytes:
    """A skin-toned, textured JPEG of the given size."""
    rng = np.random.default_rng(seed)
    small = rng.normal(0, 1, (height // 16 + 1, width // 16 + 1, 3))
    base = np.array([200, 150, 125], dtype=np.float32)
    smooth = np.asarray(
        Image.fromarray(np.uint8(np.clip(base + small * 12, 0, 255))).resize((width, height), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )
    # Fine grain (pores, sensor noise): without it the photo is declined as too blurry and the model never runs.
    grain = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    img = Image.fromarray(np.uint8(np.clip(smooth + grain, 0, 255)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def pct(values: list[float], q: float) -> float:
    """Percentile in ms, rounded."""
    return round(float(np.percentile(values, q)), 2)


def main() -> None:
    """Run the benchmark and print / write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", default="results/latency.json")
    args = p.parse_args()
    triage = Triage.load(args.model, threads=2)
    out = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "model_version": triage.version,
        "repeats": args.repeats,
    }
    cases = {
        "photo_4000x3000": ((4000, 3000), None),
        # One tap: the crops around the point (triage.inference.tap.TAP_SCALES) in one batch instead of the whole photo.
        "photo_4000x3000_one_tap": ((4000, 3000), TAP_POINT),
        "photo_1024x768": ((1024, 768), None),
    }
    photos = {name: synthetic_photo(w, h) for name, ((w, h), _) in cases.items()}
    results = {}
    for name, (_, point) in cases.items():
        for _ in range(3):
            results[name] = triage.predict_bytes(photos[name], point=point)
        if results[name].probabilities is None:  # the gate declined it: the timing would leave out the model
            raise SystemExit(f"{name}: the gate declined the benchmark photo ({results[name].reason_codes})")
    # Round robin, one run of each row per round: a busy spell on a shared machine hits every row alike, so the
    # rows stay comparable with each other (the tap row beside the no-tap row above all).
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (_, point) in cases.items():
            t0 = time.perf_counter()
            triage.predict_bytes(photos[name], point=point)
            times[name].append((time.perf_counter() - t0) * 1e3)
    for name, (_, point) in cases.items():
        out[name] = {
            "p50_ms": pct(times[name], 50),
            "p95_ms": pct(times[name], 95),
            "bytes": len(photos[name]),
            "outcome": results[name].outcome,
            "decoded_size": list(decode_upload(photos[name]).image.size),
        }
        if point is not None:
            out[name] |= {"point": list(point), "crops": len(TAP_SCALES)}
    step = summary_ms(time_model_step(triage, benchmark_input(triage), args.repeats * 3))
    out["model_step"] = {"p50_ms": round(step["median_ms"], 2), "p95_ms": round(step["p95_ms"], 2)} | step
    out["load_average"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
