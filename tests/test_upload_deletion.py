"""Each photo's file is deleted as soon as it is answered, whatever the answer (docs/APP.md, "Privacy").

* ``take_upload`` on real files: the photo comes back as bytes and its file and Gradio's per-upload folder
  are gone; a file outside the upload folder is never touched.
* The running app (``serve.py`` on the tiny model) through a real ``gradio_client``: after photos sent by
  several clients at once, a file that is not a photo and one over the size limit, the upload folder holds no
  file within 5 seconds of the last answer. The same for the client and therapist tabs, driven as the page
  drives them; a second check of an answered photo asks for it again.
* A request that times out: a ``serve.py`` of its own, with the request timeout cut to a millisecond.
* The same photo in many requests at once (Gradio stores it once, under the hash of its bytes): every request
  is answered, and the file is still gone within 5 seconds of the last answer.

The real browser's view of the same (the preview stays, the folder empties) is in ``test_browser.py``.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import PageCalls, add_grain, files_left_after, start_app_with
from gradio_client import Client, handle_file
from test_privacy import one_photo

from triage.app.upload_dir import GONE_MESSAGE, UploadRegister, take_upload
from triage.inference import limits
from triage.inference.decode import UploadError

#: Seconds after the last answer by which the upload folder must be empty (the issue's bar).
EMPTY_WITHIN_S = 5.0
PHOTOS = 8
CLIENTS = 4


def jpeg_photo(make_photo, seed: int, size: tuple[int, int] = (320, 260)) -> bytes:
    """A distinct synthetic JPEG that passes the quality checks."""
    buf = io.BytesIO()
    add_grain(make_photo(seed, size), seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def photo_files(make_photo, folder: Path, seeds: range | list[int]) -> list[Path]:
    """One JPEG file per seed in ``folder``."""
    paths = []
    for seed in seeds:
        path = folder / f"spot{seed}.jpg"
        path.write_bytes(jpeg_photo(make_photo, seed))
        paths.append(path)
    return paths


def _client(url: str) -> Client:
    return Client(url + "/", verbose=False, analytics_enabled=False, download_files=False)


# -- the function, on real files ------------------------------------------------------------------------


def test_take_upload_reads_the_photo_and_deletes_its_file_and_folder(tmp_path):
    folder = tmp_path / "uploads"
    photo = folder / ("ab" * 32) / "spot.jpg"  # Gradio's layout: <sha256 of the bytes>/<file name>
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"photo bytes")
    known = {str(photo)}

    assert take_upload({"path": str(photo), "orig_name": "spot.jpg"}, folder, known) == b"photo bytes"

    assert not photo.exists() and not photo.parent.exists()
    assert folder.is_dir() and not known
    with pytest.raises(UploadError) as info:  # asked again: gone, and the person is told why
        take_upload(str(photo), folder)
    assert info.value.code == "gone" and info.value.user_message == GONE_MESSAGE


def test_take_upload_never_deletes_outside_the_upload_folder(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    mine = tmp_path / "my-photo.jpg"
    mine.write_bytes(b"keep me")
    assert take_upload(str(mine), folder) == b"keep me"
    assert mine.read_bytes() == b"keep me"
    sneaky = folder / ".." / "my-photo.jpg"  # inside only by its spelling
    assert take_upload(str(sneaky), folder) == b"keep me"
    assert mine.exists()
    with pytest.raises(UploadError) as info:
        take_upload(None, folder)
    assert info.value.code == "empty"


def test_shared_upload_is_deleted_when_its_last_request_takes_it(tmp_path):
    folder = tmp_path / "uploads"
    photo = folder / ("cd" * 32) / "spot.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"photo bytes")
    register = UploadRegister()
    register.update([str(photo)])  # two uploads of the same bytes: one file, counted twice
    register.update([str(photo)])

    assert take_upload(str(photo), folder, register) == b"photo bytes"
    assert photo.exists() and str(photo) in register  # the other upload still waits for its check
    assert take_upload(str(photo), folder, register) == b"photo bytes"
    assert not photo.exists() and not photo.parent.exists() and not register
    with pytest.raises(UploadError) as info:  # a third check of it: really gone now
        take_upload(str(photo), folder, register)
    assert info.value.code == "gone"


def test_register_can_be_iterated_while_uploads_change_it():
    # Gradio's cleanup iterates the record in its own thread while uploads and checks change it.
    register = UploadRegister(f"/up/{k}" for k in range(1000))
    stop = threading.Event()

    def churn() -> None:
        k = 1000
        while not stop.is_set():
            register.update([f"/up/{k}"])
            register.release(f"/up/{k - 1000}")
            k += 1

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(200):
            seen = [path for path in register if path.startswith("/up/")]
            assert seen
    finally:
        stop.set()
        worker.join()
    gone = set(list(register)[:10])
    register -= gone  # how the cleanup forgets the files it deleted
    assert not gone & set(register)


# -- the running app ---------------------------------------------------------------------------------------


def test_api_photos_leave_no_file_behind(app_server, make_photo, tmp_path):
    paths = photo_files(make_photo, tmp_path, range(100, 100 + PHOTOS))
    clients = [_client(app_server.url) for _ in range(CLIENTS)]
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            jobs = [
                pool.submit(clients[k % CLIENTS].predict, handle_file(str(p)), api_name="/triage")
                for k, p in enumerate(paths)
            ]
            answers = [job.result(timeout=300) for job in jobs]
    finally:
        for client in clients:
            client.close()
    assert all("outcome" in a for a in answers), answers
    left = files_left_after(app_server.temp_dir, EMPTY_WITHIN_S)
    assert not left, f"{len(left)} files in the upload folder {EMPTY_WITHIN_S:.0f} s after the last answer: {left}"


def test_identical_photos_sent_at_once_are_all_answered_and_leave_no_file(app_server, make_photo, tmp_path):
    # 16 requests, 2 photos: Gradio stores each photo once, so up to 8 requests share one file at a time.
    paths = photo_files(make_photo, tmp_path, [60, 61])
    clients = [_client(app_server.url) for _ in range(8)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            jobs = [
                pool.submit(clients[k % len(clients)].predict, handle_file(str(paths[k % 2])), api_name="/triage")
                for k in range(16)
            ]
            answers = [job.result(timeout=300) for job in jobs]
    finally:
        for client in clients:
            client.close()
    assert all("outcome" in a for a in answers), [a for a in answers if "outcome" not in a]
    left = files_left_after(app_server.temp_dir, EMPTY_WITHIN_S)
    assert not left, f"{len(left)} files in the upload folder {EMPTY_WITHIN_S:.0f} s after the last answer: {left}"


def test_one_photo_in_two_tabs_checked_at_once_is_answered_in_both(app_server, make_photo):
    photo = jpeg_photo(make_photo, 70)
    tabs = [PageCalls(app_server.url), PageCalls(app_server.url)]
    try:
        uploads = [tab.upload("spot.jpg", photo) for tab in tabs]
        assert uploads[0]["path"] == uploads[1]["path"]  # one file for both tabs
        with ThreadPoolExecutor(2) as pool:
            jobs = [
                pool.submit(tab.run, name, one_photo(up))
                for tab, name, up in zip(tabs, ("client", "therapist"), uploads, strict=True)
            ]
            cards = [job.result(timeout=300)[0] for job in jobs]
    finally:
        for tab in tabs:
            tab.close()
    assert all("outcome-card" in c and GONE_MESSAGE not in c.replace("&#x27;", "'") for c in cards), cards
    left = files_left_after(app_server.temp_dir, EMPTY_WITHIN_S)
    assert not left, f"files left after one photo checked in two tabs: {left}"


def test_refused_uploads_leave_no_file_behind(app_server, tmp_path):
    not_a_photo = tmp_path / "holiday.jpg"
    not_a_photo.write_text("This is a shopping list, not a photo.\n", encoding="utf-8")
    too_large = tmp_path / "big.jpg"
    too_large.write_bytes(b"\xff\xd8\xff" + bytes(limits.MAX_UPLOAD_BYTES))
    client = _client(app_server.url)
    try:
        answer = client.predict(handle_file(str(not_a_photo)), api_name="/triage")
        assert set(answer) == {"error"}, answer
        with pytest.raises(ValueError, match="exceeds the maximum file size"):
            client.predict(handle_file(str(too_large)), api_name="/triage")
    finally:
        client.close()
    left = files_left_after(app_server.temp_dir, EMPTY_WITHIN_S)
    assert not left, f"files left after refused uploads: {left}"


def test_tabs_leave_no_file_behind_and_a_second_check_asks_for_the_photo(app_server, make_photo):
    from triage.app.layout import CHECKLIST

    page = PageCalls(app_server.url)
    try:
        upload = page.upload("spot.jpg", jpeg_photo(make_photo, 31))
        card, _edu = page.run("client", one_photo(upload))
        assert "outcome-card" in card and GONE_MESSAGE not in card
        assert not files_left_after(app_server.temp_dir, EMPTY_WITHIN_S)
        again, _edu = page.run("client", one_photo(upload))  # the same upload, pressed again: its file is gone
        assert GONE_MESSAGE in again.replace("&#x27;", "'")

        spot = page.upload("spot.jpg", jpeg_photo(make_photo, 32))
        _card, _panel, _details, heat, _state = page.run("therapist", one_photo(spot))
        assert heat.count("data:image/jpeg;base64,") == 1
        (summary,) = page.run("make_summary", [None, [CHECKLIST[0]], "notes"])
        assert "data:text/html" in summary
    finally:
        page.close()
    left = files_left_after(app_server.temp_dir, EMPTY_WITHIN_S)
    assert not left, f"files left after the therapist tab (Grad-CAM, summary): {left}"


@pytest.fixture(scope="module")
def slow_app(tiny_model, tmp_path_factory, monkeypatch_module):
    """``serve.py`` whose request timeout is one millisecond (set at start-up through ``sitecustomize``)."""
    limit = "import triage.inference.limits\ntriage.inference.limits.REQUEST_TIMEOUT_S = 0.001\n"
    server = start_app_with(tiny_model, tmp_path_factory.mktemp("timeout_app"), limit)
    yield server
    if server.process.poll() is None:
        server.process.terminate()
        server.process.wait(timeout=60)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        yield mp


def test_a_request_that_times_out_leaves_no_file_behind(slow_app, make_photo, tmp_path):
    timeout_message = UploadError("timeout").user_message
    path = tmp_path / "spot.jpg"
    path.write_bytes(jpeg_photo(make_photo, 41))
    client = _client(slow_app.url)
    try:
        assert client.predict(handle_file(str(path)), api_name="/triage") == {"error": timeout_message}
    finally:
        client.close()
    page = PageCalls(slow_app.url)
    try:
        card, _edu = page.run("client", one_photo(page.upload("spot.jpg", Path(path).read_bytes())))
    finally:
        page.close()
    assert timeout_message in card.replace("&#x27;", "'")
    left = files_left_after(slow_app.temp_dir, EMPTY_WITHIN_S)
    assert not left, f"files left after requests that timed out: {left}"


def test_privacy_page_states_the_backstop_the_app_uses():
    from triage.app.content_loader import page

    minutes = (limits.UPLOAD_SWEEP_EVERY_S + limits.UNCHECKED_UPLOAD_MAX_AGE_S) / 60
    assert minutes == int(minutes)
    text = page("privacy")
    assert f"deleted within {int(minutes)} minutes" in text
    assert "deleted as soon as it is checked" in text and "summary" in text and "ticked" in text
