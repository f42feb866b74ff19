"""The serving limits (``triage.inference.limits``) are the ones enforced, and going over one gets a plain sentence.

Upload size, pixels, request timeout and queue: each checked where it is enforced (decoder, the built app,
the running app) rather than only read back from the constants.
"""

from __future__ import annotations

import time

import httpx
import pytest

from triage.core.red_flags import RED_FLAGS
from triage.inference import decode, limits
from triage.inference.decode import UploadError, decode_upload

PHOTO_CHECKS = ("client", "therapist", "api")


@pytest.fixture(scope="module")
def built_app(tiny_model):
    """The app as serve.py builds it (not launched), with its event functions by name."""
    from triage.app.layout import build_app
    from triage.inference.engine import Triage

    app = build_app(Triage.load(tiny_model, threads=None))
    return app, {fn.name: fn for fn in app.fns.values()}


@pytest.fixture
def photo_path(make_photo, tmp_path) -> str:
    path = tmp_path / "photo.jpg"
    make_photo(5, (640, 480)).save(path, "JPEG", quality=90)
    return str(path)


def test_decoder_enforces_the_limits_module():
    assert decode.MAX_BYTES == limits.MAX_UPLOAD_BYTES == 20 * 1024 * 1024
    assert decode.MAX_PIXELS == limits.MAX_PIXELS
    assert decode.MAX_JPEG_HEADER_PIXELS == limits.MAX_JPEG_HEADER_PIXELS
    # One byte over, at the real size: refused before anything is parsed, with the limit in the sentence.
    with pytest.raises(UploadError) as info:
        decode_upload(b"\xff\xd8\xff" + bytes(limits.MAX_UPLOAD_BYTES - 2))
    assert info.value.code == "too_large_bytes"
    assert "20 MB" in info.value.user_message


def test_gradio_upload_cap_is_the_decoder_limit():
    from gradio.utils import _parse_file_size

    from triage.app.layout import UPLOAD_LIMIT

    assert _parse_file_size(UPLOAD_LIMIT) == limits.MAX_UPLOAD_BYTES


def test_built_app_bounds_its_queue_and_concurrency(built_app):
    app, fns = built_app
    assert app._queue.max_size == limits.QUEUE_MAX_SIZE
    groups = {fns[name].concurrency_id for name in PHOTO_CHECKS}
    assert len(groups) == 1, "every photo check must share one concurrency group"
    assert all(fns[name].concurrency_limit == limits.CONCURRENCY_LIMIT for name in PHOTO_CHECKS)


def test_request_over_the_timeout_gets_a_sentence(built_app, photo_path, monkeypatch):
    _, fns = built_app
    api, client = fns["api"].fn, fns["client"].fn
    assert "outcome" in api(photo_path)  # within the limit: a result
    # A check that takes 0.5 s longer than usual against a limit of 0.05 s. (A limit of 1 ms alone was racy:
    # a waiting thread woken late finds a fast check already finished and returns its answer.)
    engine = client.__self__.triage
    real_check = engine.predict_upload

    def slow_check(*args, **kwargs):
        time.sleep(0.5)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(engine, "predict_upload", slow_check)
    monkeypatch.setattr(limits, "REQUEST_TIMEOUT_S", 0.05)
    message = UploadError("timeout").user_message
    assert api(photo_path) == {"error": message}
    card, _edu = client(photo_path, None, *[None] * len(RED_FLAGS))  # one photo, no tap, questions skipped
    assert message in card.replace("&#x27;", "'")
    monkeypatch.undo()
    assert "outcome" in api(photo_path)  # the app recovers: the abandoned checks finished in the background


def test_running_app_refuses_an_oversize_upload_in_a_sentence(app_url, tmp_path):
    body = bytes(limits.MAX_UPLOAD_BYTES + 1)
    with httpx.Client(trust_env=False, timeout=60) as http:
        response = http.post(f"{app_url}/gradio_api/upload", files={"files": ("big.jpg", body, "image/jpeg")})
    assert response.status_code == 413
    assert f"maximum allowed size of {limits.MAX_UPLOAD_BYTES} bytes" in response.text
    assert "Traceback" not in response.text

    from gradio_client import Client, handle_file

    path = tmp_path / "big.jpg"
    path.write_bytes(body)
    client = Client(app_url + "/", verbose=False, analytics_enabled=False, download_files=False)
    try:
        with pytest.raises(ValueError, match="exceeds the maximum file size"):
            client.predict(handle_file(str(path)), api_name="/triage")
        # Nothing at all: the API's own sentence, not an exception.
        assert client.predict(None, api_name="/triage") == {"error": "Please add a photo first."}
    finally:
        client.close()
