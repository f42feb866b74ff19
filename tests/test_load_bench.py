"""The load bench's verdicts (``bench/load.py``): what counts as a wrong answer, a traceback, memory growth.

The bench itself runs the real app for minutes (``python bench/load.py``); here its judging parts, on real
answers' shapes and a real server log's traceback format, so that a broken judge cannot pass a bad run.
"""

from __future__ import annotations

from pathlib import Path

from helpers import load_script

from triage.testing.hostile_mix import Upload, hostile_uploads, judge

load = load_script("bench/load.py")

LOG = """INFO:     Started server process [1234]
Traceback (most recent call last):
  File "/x/gradio/route_utils.py", line 1167, in delete_files_created_by_app
    for file in temp_set:
RuntimeError: Set changed size during iteration
INFO:     127.0.0.1:5000 - "POST /gradio_api/upload HTTP/1.1" 200 OK
"""


def test_judge_wants_a_result_for_a_photo_and_a_sentence_for_a_broken_file():
    photo, broken, odd_but_fine = Upload(Path("p.jpg")), Upload(Path("t.jpg"), "truncated"), Upload(Path("c"), "ok")
    assert judge({"outcome": "other"}, photo) is None
    assert judge({"outcome": "other"}, odd_but_fine) is None
    assert judge({"error": "The photo seems to be incomplete. Please try sending it again."}, broken) is None
    assert judge({"error": "Please add a photo first."}, photo)  # a valid photo must get a result
    assert judge({"outcome": "other"}, broken)  # a broken file must not
    assert judge({"error": "Traceback (most recent call last): ..."}, broken)
    assert judge(None, broken) and judge("Error", photo)
    assert not photo.hostile and broken.hostile and odd_but_fine.hostile


def test_hostile_uploads_are_the_corpus_as_files(tmp_path):
    uploads = hostile_uploads(tmp_path)
    assert len(uploads) > 20 and all(u.path.is_file() and u.hostile for u in uploads)
    assert {u.expect for u in uploads} >= {"ok", "not_an_image", "truncated", "too_many_pixels"}


def test_tracebacks_in_the_server_log_are_counted_and_shown():
    count, samples = load.tracebacks_in(LOG)
    assert count == 1
    assert samples[0].startswith("Traceback") and samples[0].endswith("Set changed size during iteration")
    assert load.tracebacks_in("INFO: all well\n") == (0, [])


def _sampler(values_mb: list[float], every_s: float = 60.0):
    sampler = load.RssSampler.__new__(load.RssSampler)  # the samples alone, without a server to sample
    sampler.samples = [(k * every_s, mb) for k, mb in enumerate(values_mb)]
    return sampler


def test_memory_growth_is_the_floor_after_the_warmup_not_a_checks_peak():
    warmup = [900.0, 980.0, 1000.0, 1010.0, 1020.0]  # the first 5 minutes do not count
    steady_with_peaks = [1040.0, 1210.0, 1041.0, 1045.0, 1040.0, 1225.0, 1043.0, 1044.0, 1042.0, 1200.0]
    assert _sampler(warmup + steady_with_peaks).growth_after(300) == 2.0
    leaking = [1040.0 + 10 * k for k in range(10)]
    assert _sampler(warmup + leaking).growth_after(300) == 50.0
    assert _sampler(warmup + [1040.0]).growth_after(300) is None  # one sample after the warm-up: nothing to compare
