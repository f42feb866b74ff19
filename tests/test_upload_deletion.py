"""Each photo's file is deleted as soon as it is answered, whatever the answer (docs/APP.md, "Privacy").

* ``take_upload`` on real files: the photo comes back as bytes and its file and Gradio's per-upload folder
  are gone; a file outside the upload folder is never touched.
* The running app (``serve.py`` on the tiny model) through a real ``gradio_client``: after photos sent by
  several clients at once, a file that is not a photo and one over the size limit, the upload folder holds no
  file within 5 seconds of the last answer. The same for the client and therapist tabs, driven as the page
  drives them; a second check of an answered photo asks for it again.
* A request that times out: a ``serve.py`` of its own, with the request timeout cut to a millisecond.

The real browser's view of the same (the preview stays, the folder empties) is in ``test_browser.py``.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import PageCalls, add_grain, files_left_after, start_app
from gradio_client import Client, handle_file
from test_privacy import one_photo

from triage.app.upload_dir import GONE_MESSAGE, take_upload
from triage.inference import limits
from triage.inference.decode import UploadError

#: Seconds after the last answer by which the upload folder must be empty (the issue's bar).
EMPTY_WITHIN_S = 5.0
PHOTOS = 8
CLIENTS = 4


def _jpeg(make_photo, seed: int, size: tuple[int, int] = (320, 260)) -> bytes:
    buf = io.BytesIO()
    add_grain(make_photo(seed, size), seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


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


# -- the running app ---------------------------------------------------------------------------------------


def test_api_photos_leave_no_file_behind(app_server, make_photo, tmp_path):
    paths = []
    for k in range(PHOTOS):
        path = tmp_path / f"spot{k}.jpg"
        path.write_bytes(_jpeg(make_photo, 100 + k))
        paths.append(path)
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
        upload = page.upload("spot.jpg", _jpeg(make_photo, 31))
        card, _edu = page.run("client", one_photo(upload))
        assert "outcome-card" in card and GONE_MESSAGE not in card
        assert not files_left_after(app_server.temp_dir, EMPTY_WITHIN_S)
        again, _edu = page.run("client", one_photo(upload))  # the same upload, pressed again: its file is gone
        assert GONE_MESSAGE in again.replace("&#x27;", "'")

        spot = page.upload("spot.jpg", _jpeg(make_photo, 32))
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
    work = tmp_path_factory.mktemp("timeout_app")
    site = work / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import triage.inference.limits\ntriage.inference.limits.REQUEST_TIMEOUT_S = 0.001\n"
    )
    monkeypatch_module.setenv("PYTHONPATH", str(site))
    server = start_app(tiny_model, work)
    monkeypatch_module.delenv("PYTHONPATH")
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
    path.write_bytes(_jpeg(make_photo, 41))
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
