"""The one model-step timing the benches share (``triage.research.step_timing``), on the tiny real checkpoint."""

from __future__ import annotations

from triage.inference.engine import Triage
from triage.research.step_timing import benchmark_input, summary_ms, time_model_step, time_side_by_side


def test_side_by_side_gives_each_engine_its_repeats_in_blocks(tiny_model):
    engine = Triage.load(tiny_model, threads=1)
    x = benchmark_input(engine)
    assert tuple(x.shape) == (1, 3, 64, 64)
    assert len(time_model_step(engine, x, 4, warmup=1)) == 4
    times = time_side_by_side({"a": engine, "b": engine}, x, repeats=7, block=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 7, "b": 7}
    stats = summary_ms(times["a"])
    assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"] <= stats["p95_ms"]
