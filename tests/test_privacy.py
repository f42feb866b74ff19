"""Privacy, measured on the real app: a batch of photos with a camera make, GPS position and comment planted
in their metadata goes through every tab that takes a photo, then we look at what came back, what was
logged and what was left on disk.

* Nothing returned to the client (API JSON, result cards, Grad-CAM image, printable summary) carries the
  original metadata.
* No log line holds image bytes (raw, hex or base64) or metadata, with the app logging at DEBUG level.
* Once a photo is answered, its file is gone: right after the batch no file with uploaded bytes is left in
  the app's temporary folders (the heat map and the summary are never written: they come back inline).
* Once Gradio's cleanup has run (at shutdown, as after Ctrl-C), not even a photo that was uploaded but never
  sent for checking is left.

The app is ``serve.py`` on the tiny test model, started with ``conftest.start_app`` in a folder of its own
(its ``GRADIO_TEMP_DIR`` and ``TMPDIR`` are ours to inspect), because this module stops it.
"""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import AppServer, PageCalls, data_url_bytes, load_corpus_module, start_app
from PIL import Image

from triage.core.red_flags import RED_FLAGS

REPO = Path(__file__).resolve().parents[1]
#: Seconds the app may take to stop and clean up after SIGINT (a second or two on a quiet machine; generous
#: because a busy 2-core machine running training can take half a minute).
STOP_TIMEOUT_S = 120


corpus = load_corpus_module()
#: Text planted in uploads and the therapist's notes: none of it may come back or be logged.
SECRETS = (corpus.SECRET_MAKE, corpus.SECRET_COMMENT.decode())

# The server's logging, set before anything else runs in it: everything at DEBUG (Gradio, uvicorn, multipart
# parsing, httpx, triage), so that "no log line holds image bytes or EXIF" is checked at the noisiest level.
SITECUSTOMIZE = (
    "import logging\n"
    "logging.basicConfig(level=logging.DEBUG, format='%(levelname)s %(name)s: %(message)s')\n"
    "logging.getLogger(__name__).debug('sitecustomize: DEBUG logging on')\n"
)


@dataclass
class Batch:
    """What one batch of requests sent, got back and left behind."""

    server: AppServer
    systmp: Path
    payloads: dict[str, bytes]
    notes: str
    #: A broken upload whose header still holds the planted EXIF: refused, which is when the decoder logs.
    refused: bytes = b""
    refusal_answers: list[dict] = field(default_factory=list)
    api_answers: list[dict] = field(default_factory=list)
    cards: list[str] = field(default_factory=list)
    heat_maps: list[bytes] = field(default_factory=list)
    summaries: list[bytes] = field(default_factory=list)
    #: A photo uploaded but never sent for checking (the page closed first): on disk until the cleanup.
    unchecked: bytes = b""
    found_once_answered: list[str] = field(default_factory=list)
    found_unchecked: list[str] = field(default_factory=list)


def _payloads(make_photo) -> dict[str, bytes]:
    """Uploads with planted metadata: corpus files, HEIC when it can be made, and a skin-like photo."""
    payloads = {name: corpus.BY_NAME[name].make() for name in ("metadata.jpg", "metadata.png", "exif_rotated.jpg")}
    heic = corpus.make_heic()
    if heic is not None:
        payloads["photo.heic"] = corpus.encode(
            corpus.textured_rgb((96, 64), seed=8), "HEIF", exif=corpus.secret_exif().tobytes()
        )
    payloads["skin.jpg"] = corpus.encode(
        make_photo(1, (320, 240)),
        "JPEG",
        quality=92,
        exif=corpus.secret_exif(orientation=1).tobytes(),
        comment=corpus.SECRET_COMMENT,
    )
    return payloads


def _files_holding(folder: Path, needles: list[bytes]) -> list[str]:
    """Files under ``folder`` whose bytes contain any of ``needles``."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(n in data for n in needles):
                hits.append(str(path.relative_to(folder)))
    return hits


def _fragments(data: bytes, count: int = 6, size: int = 24) -> list[bytes]:
    """Slices from the body of a file (past its header), as raw bytes, hex and base64."""
    body = data[64:] if len(data) > 64 + size else data
    step = max(1, (len(body) - size) // count)
    out = []
    for start in range(0, max(1, len(body) - size), step)[:count]:
        piece = body[start : start + size]
        out += [piece, piece.hex().encode(), base64.b64encode(piece)[:-4]]
    return out


def _stop_gracefully(proc: subprocess.Popen) -> int:
    """SIGINT (Ctrl-C), which runs Gradio's shutdown cleanup; kill only if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
            pytest.fail(f"serve.py did not stop within {STOP_TIMEOUT_S}s of SIGINT")
    return proc.returncode


def one_photo(file_data: dict) -> list:
    """The inputs of a tab's check button for one photo: photo slots 2 and 3 empty, no tapped point, the red-flag
    questions answered (the answers are health data too: they must not reach a log either)."""
    from triage.core.red_flags import RED_FLAGS, YES
    from triage.inference.tap import MAX_PHOTOS

    return [file_data, None] + [None, None] * (MAX_PHOTOS - 1) + [YES] * len(RED_FLAGS)


@pytest.fixture(scope="module")
def batch(tiny_model, tmp_path_factory, make_photo) -> Iterator[Batch]:
    from triage.app.layout import CHECKLIST

    work = tmp_path_factory.mktemp("privacy_app")
    systmp, site = work / "systmp", work / "site"
    systmp.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    with pytest.MonkeyPatch.context() as mp:
        # start_app passes our environment on: the server's tempfile folder and logging are ours to inspect.
        mp.setenv("TMPDIR", str(systmp))
        mp.setenv("PYTHONPATH", str(site))
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        server = start_app(tiny_model, work)
    b = Batch(server, systmp, _payloads(make_photo), notes=f"client notes {uuid.uuid4().hex}")
    browser = PageCalls(server.url)
    try:
        for name, data in b.payloads.items():
            # The documented API (no tapped point: None, as gradio_client sends for it).
            (answer,) = browser.run("triage", [browser.upload(name, data), None, "changed,eye=no"])
            b.api_answers.append(answer)
            card, _edu = browser.run("client", one_photo(browser.upload(name, data)))
            b.cards.append(card)
            card, _probs, _details, heat, _state = browser.run("therapist", one_photo(browser.upload(name, data)))
            b.cards.append(card)
            if heat:
                b.heat_maps.append(data_url_bytes(heat))
        b.refused = corpus.make_metadata_jpeg()[:1500]  # EXIF and comment intact, pixels cut short
        (answer,) = browser.run("triage", [browser.upload("broken.jpg", b.refused), None, None])
        b.refusal_answers.append(answer)
        card, _edu = browser.run("client", one_photo(browser.upload("broken.jpg", b.refused)))
        b.cards.append(card)
        # The summary of the last therapist check (its result is kept in the session's state).
        (summary,) = browser.run("make_summary", [None, [CHECKLIST[2]], b.notes])
        b.summaries.append(data_url_bytes(summary))
        b.found_once_answered = _files_holding(server.temp_dir, [*b.payloads.values(), b.refused])
        b.unchecked = corpus.encode(make_photo(2, (200, 160)), "JPEG", quality=90, comment=corpus.SECRET_COMMENT)
        browser.upload("never-checked.jpg", b.unchecked)
        b.found_unchecked = _files_holding(server.temp_dir, [b.unchecked])
    except BaseException:
        _stop_gracefully(server.process)
        raise
    finally:
        # No connection may stay open: Gradio's cleanup runs at shutdown only if its server stops within 5 s,
        # and an open request (e.g. a browser's event stream) holds it past that, so nothing gets cleaned.
        browser.close()
    yield b
    if server.process.poll() is None:
        _stop_gracefully(server.process)


def test_batch_went_through(batch):
    assert len(batch.api_answers) == len(batch.payloads) >= 4
    assert corpus.SECRET_MAKE.encode() in batch.refused  # the refused upload does carry the metadata
    assert batch.refusal_answers == [{"error": "The photo seems to be incomplete. Please try sending it again."}]
    assert all("outcome" in a for a in batch.api_answers), batch.api_answers
    assert batch.heat_maps, "no Grad-CAM image came back: the tiny model should give probabilities"
    assert len(batch.summaries) == 1
    # The scan looks in the right place: a photo uploaded but never checked is found there.
    assert batch.found_unchecked, "an unchecked upload was not found in GRADIO_TEMP_DIR: is the scan looking there?"


def test_answered_photos_leave_no_file_even_before_cleanup(batch):
    assert not batch.found_once_answered, f"answered uploads still on disk: {batch.found_once_answered}"


def test_nothing_returned_carries_metadata(batch):
    keys = {"outcome", "urgency", "probabilities", "reasons", "reason_codes", "quality", "ood_score", "model_version"}
    for answer in batch.api_answers:
        # No file name, no EXIF, no extra fields: only the answers the API was sent back (they were given).
        assert set(answer) == keys | {"timings_ms", "answers"}, sorted(answer)
    returned = json.dumps(batch.api_answers + batch.refusal_answers) + "".join(batch.cards)
    for secret in SECRETS:
        assert secret not in returned
    for heat in batch.heat_maps:
        image = Image.open(io.BytesIO(heat))
        assert not set(image.info) & {"exif", "icc_profile", "xmp", "comment", "Comment", "Author"}, image.info
        assert len(image.getexif()) == 0
        assert not any(s.encode() in heat for s in SECRETS)
    for html in batch.summaries:
        assert b"No photo is included" in html
        assert not any(s.encode() in html for s in SECRETS)
        assert b"<img" not in html and b"base64," not in html


def test_no_log_line_holds_image_bytes_or_metadata(batch):
    log = batch.server.log.read_bytes()
    assert b"DEBUG" in log and b"sitecustomize: DEBUG logging on" in log, "the app did not log at DEBUG"
    assert b"triage.inference.decode: upload refused: truncated" in log, "the decoder's own log lines are not captured"
    for secret in (*SECRETS, batch.notes):
        assert secret.encode() not in log, f"{secret!r} was logged"
    # The red-flag answers were given on every check (one_photo, the API's flags): neither they nor the reasons
    # they add may reach the log.
    assert all(a.get("answers") == {"changed": "yes", "eye": "no"} for a in batch.api_answers)
    for flag in RED_FLAGS:
        assert flag.if_yes.encode() not in log and flag.question.encode() not in log, f"{flag.key} was logged"
    for name, data in [*batch.payloads.items(), ("broken.jpg", batch.refused)]:
        leaked = [f for f in _fragments(data) if f in log]
        assert not leaked, f"bytes of {name} were logged: {leaked[:2]}"
    assert b"Traceback" not in log


def test_no_uploaded_bytes_remain_after_cleanup(batch):
    needles = [*batch.payloads.values(), batch.refused, batch.unchecked, *batch.heat_maps, batch.notes.encode()]
    assert _stop_gracefully(batch.server.process) is not None
    left = _files_holding(batch.server.temp_dir, needles) + _files_holding(batch.systmp, needles)
    assert not left, f"left on disk after cleanup: {left}"
    # Gradio leaves a few empty staging files and folders; anything with content would be ours.
    non_empty = [p for p in batch.server.temp_dir.rglob("*") if p.is_file() and p.stat().st_size]
    assert not non_empty, f"files with content left in GRADIO_TEMP_DIR: {non_empty}"


def test_sigterm_leaves_no_upload_behind(tiny_model, tmp_path, make_photo):
    """A service manager's SIGTERM, with a photo uploaded but never checked: the run's private folder goes too."""
    server = start_app(tiny_model, tmp_path)
    page = PageCalls(server.url)
    try:
        buf = io.BytesIO()
        make_photo(7).save(buf, "JPEG", quality=90)
        page.upload("spot.jpg", buf.getvalue())  # the page uploads on selection; the person never presses "Check"
        private = list(server.temp_dir.glob("triage-uploads-*"))
        assert len(private) == 1, "serve.py should keep its uploads in one private folder of its own"
        assert any(p.is_file() and p.stat().st_size for p in private[0].rglob("*")), "the upload should be there"
    finally:
        page.close()
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.process.kill()
                pytest.fail(f"serve.py did not stop within {STOP_TIMEOUT_S}s of SIGTERM")
    assert not list(server.temp_dir.glob("triage-uploads-*"))
    assert not [p for p in server.temp_dir.rglob("*") if p.is_file() and p.stat().st_size]
