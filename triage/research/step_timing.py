"""How the benchmarks time the model step, defined once for ``bench/latency.py``, ``bench/onnx_latency.py``
and ``bench/backbones.py``.

The model step is what an engine's ``model_outputs`` does for one photo: network, calibrated softmax and
out-of-distribution score, on a photo decoded and preprocessed beforehand. It is timed over consecutive calls
of one engine after a warm-up. Interleaving two engines call by call (as ``onnx_latency.py`` once did) inflates
PyTorch's time several-fold on 2 cores: after each ONNX Runtime call its worker threads keep spinning for a
while and PyTorch's own threads must be woken again, so each PyTorch call starts against busy cores. Engines
compared side by side therefore alternate in blocks, each block warmed up again before it is timed.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from triage.testing.synthetic import cast_and_grain, synthetic_photo

#: Calls before timing starts (and again after every switch of engine).
WARMUP = 10


def benchmark_input(engine) -> torch.Tensor:
    """The model input every bench uses: a generated 640x480 skin-like photo, preprocessed by ``engine``."""
    return engine.input_tensor(cast_and_grain(synthetic_photo(np.random.default_rng(0), (640, 480)), 0))


def time_model_step(engine, x: torch.Tensor, repeats: int, warmup: int = WARMUP) -> list[float]:
    """Milliseconds of ``repeats`` consecutive ``engine.model_outputs(x)`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        engine.model_outputs(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine.model_outputs(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def time_side_by_side(
    engines: dict, x: torch.Tensor, repeats: int, block: int = 20, warmup: int = WARMUP
) -> dict[str, list[float]]:
    """Each engine timed as :func:`time_model_step` does, in alternating blocks so that all see the same load.

    Args:
        engines: ``{name: engine}``.
        x: the model input.
        repeats: timed calls per engine.
        block: timed calls per block; ``block=1, warmup=0`` is call-by-call alternation (to show its effect).
        warmup: untimed calls at the start of every block.

    Returns:
        ``{name: milliseconds}``, ``repeats`` values per engine.
    """
    times: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():  # first use (thread pools, caches) is never timed
        time_model_step(engine, x, 0, WARMUP)
    while any(len(t) < repeats for t in times.values()):
        for name, engine in engines.items():
            times[name] += time_model_step(engine, x, min(block, repeats - len(times[name])), warmup)
    return times


def summary_ms(times: list[float]) -> dict[str, float]:
    """Median, p90, p95, mean and min of a list of milliseconds (rounded to microseconds)."""
    return {
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(float(np.percentile(times, 90)), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "mean_ms": round(statistics.fmean(times), 3),
        "min_ms": round(min(times), 3),
    }


__all__ = ["WARMUP", "benchmark_input", "summary_ms", "time_model_step", "time_side_by_side"]
