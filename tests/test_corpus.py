"""Every file of the hostile-upload corpus, through the predict API and through the running app.

Each answer must be a result or a plain sentence (the decoder's own message for that refusal), never a
traceback, never slower than :data:`PER_FILE_S`, and memory must stay bounded: the peak resident memory
while the whole corpus goes through stays within :data:`MAX_RSS_GROWTH_MB` of where it started (a decoded
30000x30000 PNG would need 2.7 GB, a fully decoded 12000x9000 JPEG 324 MB).

The corpus comes from ``triage.testing.corpus`` (written once per module under ``tmp_path``, the 108 MP
JPEG included); the app is the real ``serve.py`` on the tiny test model (``app_server`` in conftest).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import load_corpus_module

from triage.core.outcomes import CANT_ASSESS, OUTCOMES
from triage.inference.decode import UploadError
from triage.inference.engine import Triage

REPO = Path(__file__).resolve().parents[1]

#: Longest any one file may take, through either path (a 108 MP JPEG takes ~0.4 s here). Over it: a hang.
PER_FILE_S = 20.0
#: Most the peak resident memory may rise above its starting point while the whole corpus goes through: 10 bytes
#: per pixel at ``MAX_PIXELS``. A 40 MP image may be decoded at full size once (RGBA: 160 MB, plus the
#: premultiplied copy Pillow resamples), nothing more; a fully decoded 108 MP JPEG or a 16-bit 40 MP PNG
#: converted at full size (~1 GB, as before the fix) breaks it.
MAX_RSS_GROWTH_MB = 400


corpus = load_corpus_module()
NAMES = [case.name for case in corpus.CASES]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """The whole corpus on disk, as ``scripts/make_corpus.py`` writes it (with ``expected.json``)."""
    out = tmp_path_factory.mktemp("corpus")
    corpus.write_corpus(out)
    return out


@pytest.fixture(scope="module")
def triage(tiny_model) -> Triage:
    return Triage.load(tiny_model, threads=None)


def is_plain_sentence(text: object) -> bool:
    """A short message for a person: words, a full stop, and nothing that looks like a stack trace or repr."""
    if not isinstance(text, str) or not 3 <= len(text.split()) <= 60 or not text.rstrip().endswith("."):
        return False
    return not re.search(r"Traceback|File \"|Error\b|Exception|\bline \d+|<[a-z]+ object at", text)


def _check_result_dict(d: dict) -> None:
    assert d["outcome"] in (*OUTCOMES, CANT_ASSESS)
    assert all(is_plain_sentence(r) for r in d["reasons"]), d["reasons"]
    if d["outcome"] == CANT_ASSESS:
        assert d["reasons"], "a can't-assess answer must say why"


# -- memory ------------------------------------------------------------------------------------------------------


def _status_kb(pid: int | str, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def reset_peak_rss(pid: int | str = "self") -> int:
    """Reset the process's peak-RSS counter (VmHWM) to its current RSS; return that RSS in kB.

    Skips the test where Linux's ``/proc/<pid>/clear_refs`` is not available or not writable.
    """
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as err:
        pytest.skip(f"cannot reset the peak-RSS counter here ({type(err).__name__}); memory is not measured")
    return _status_kb(pid, "VmRSS")


def peak_rss_kb(pid: int | str = "self") -> int:
    """Peak resident memory (VmHWM) since start or since :func:`reset_peak_rss`, in kB."""
    return _status_kb(pid, "VmHWM")


# -- the predict API ---------------------------------------------------------------------------------------------


def _check_answer(name: str, answer: dict, elapsed: float) -> list[str]:
    """Problems with one answer (``TriageResult.to_dict()`` or ``{"error": sentence}``) for corpus file ``name``."""
    expect = corpus.BY_NAME[name].expect
    problems = [f"{name}: took {elapsed:.1f}s"] if elapsed > PER_FILE_S else []
    if expect == "ok":
        try:
            _check_result_dict(answer)
            json.dumps(answer)  # what the CLI and the API send must serialise
        except (AssertionError, KeyError, TypeError) as err:
            problems.append(f"{name}: expected a result, got {str(answer)[:200]} ({err})")
    elif answer != {"error": UploadError(expect).user_message}:
        problems.append(f"{name}: expected the {expect!r} sentence, got {str(answer)[:200]}")
    elif not is_plain_sentence(answer["error"]):
        problems.append(f"{name}: not a plain sentence: {answer['error']!r}")
    return problems


def _corpus_files(corpus_dir: Path) -> list[Path]:
    files = [corpus_dir / name for name in NAMES if (corpus_dir / name).is_file()]
    # The memory bound means something only with the heavy cases in the run.
    assert {"huge_12000x9000.jpg", "huge_gray16_6300.png", "bomb_30000.png"} <= {f.name for f in files}
    return files


def test_predict_api_answers_every_file_and_memory_stays_bounded(corpus_dir, triage):
    triage.predict_path(corpus_dir / "metadata.jpg")  # warm-up: first-call allocations are not growth
    start_kb = reset_peak_rss()
    problems = []
    for path in _corpus_files(corpus_dir):
        start = time.perf_counter()
        try:
            answer = triage.predict_path(path).to_dict()
            answer.pop("file")
        except UploadError as err:
            answer = {"error": err.user_message}
        problems += _check_answer(path.name, answer, time.perf_counter() - start)
    growth_mb = (peak_rss_kb() - start_kb) / 1024
    assert not problems, "\n".join(problems)
    assert growth_mb < MAX_RSS_GROWTH_MB, f"peak RSS rose {growth_mb:.0f} MB over the corpus"


# -- the app endpoint --------------------------------------------------------------------------------------------


def test_app_endpoint_answers_every_file_and_memory_stays_bounded(app_server, corpus_dir):
    from gradio_client import Client, handle_file

    pid = app_server.process.pid
    log_before = app_server.log.read_text(errors="replace")
    client = Client(app_server.url + "/", verbose=False, analytics_enabled=False, download_files=False)
    client.predict(handle_file(str(corpus_dir / "metadata.jpg")), api_name="/triage")  # warm-up
    start_kb = reset_peak_rss(pid)
    problems = []
    try:
        for path in _corpus_files(corpus_dir):
            start = time.perf_counter()
            job = client.submit(handle_file(str(path)), api_name="/triage")
            try:
                answer = job.result(timeout=PER_FILE_S)
            except Exception as err:  # noqa: BLE001 - a failed request is what this test reports
                problems.append(f"{path.name}: request failed: {type(err).__name__}: {str(err)[:200]}")
                continue
            problems += _check_answer(path.name, answer, time.perf_counter() - start)
    finally:
        client.close()
    growth_mb = (peak_rss_kb(pid) - start_kb) / 1024
    assert not problems, "\n".join(problems)
    assert growth_mb < MAX_RSS_GROWTH_MB, f"the app's peak RSS rose {growth_mb:.0f} MB over the corpus"
    assert app_server.process.poll() is None, "the app died"
    new_log = app_server.log.read_text(errors="replace")[len(log_before) :]
    assert "Traceback" not in new_log, new_log[-3000:]
