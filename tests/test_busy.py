"""Over the queue's bound, a request gets a plain "busy" answer at once, never a hang or a raw error.

A ``serve.py`` of its own, with the queue cut to one waiting request and every check slowed by a second and a
half (both set at start-up through ``sitecustomize``), so that a handful of requests sent at once overflow it:

* the page's way in (``/queue/join``) answers HTTP 503 with :data:`triage.app.busy.BUSY_MESSAGE`, and
  ``gradio_client`` on ``/triage`` raises its ``QueueError`` ("Queue is full! Please try again."), at once;
* every request the queue admitted is answered;
* the refused requests' photos are deleted too: no file within 5 seconds of the last answer;
* no traceback in the server's log;
* in a real browser (headless Chromium, skipped without one), a click while other clients keep the queue full
  shows Gradio's plain "This application is currently busy. Please try again.", no raw error.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import PageCalls, files_left_after, start_app_with
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from helpers import load_script
from test_privacy import one_photo
from test_upload_deletion import jpeg_photo, photo_files

from triage.app.busy import BUSY_MESSAGE, uploads_in

REQUESTS = 8
#: Seconds a refusal may take: it is decided at the door, not after a wait.
REFUSED_WITHIN_S = 10.0
SITECUSTOMIZE = """
import time
import triage.inference.limits
triage.inference.limits.QUEUE_MAX_SIZE = 1
from triage.inference.engine import Triage
_check = Triage.predict_upload
def _slow_check(self, *args, **kwargs):
    time.sleep(1.5)
    return _check(self, *args, **kwargs)
Triage.predict_upload = _slow_check
"""


@pytest.fixture(scope="module")
def small_queue_app(tiny_model, tmp_path_factory):
    """``serve.py`` with room for one waiting request and slow checks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        server = start_app_with(tiny_model, tmp_path_factory.mktemp("small_queue_app"), SITECUSTOMIZE)
        yield server
    if server.process.poll() is None:
        server.process.terminate()
        server.process.wait(timeout=60)


def _join(url: str, photo: bytes) -> tuple[int, str, float]:
    """Upload a photo and ask the page's way in for a check: ``(status, refusal detail, seconds)``."""
    page = PageCalls(url)
    try:
        body = {"data": one_photo(page.upload("spot.jpg", photo)), "fn_index": page.fn_index["client"]}
        t0 = time.perf_counter()
        response = page.http.post(f"{url}/gradio_api/queue/join", json=body | {"session_hash": page.session})
        took = time.perf_counter() - t0
        detail = response.json().get("detail", "") if response.status_code != 200 else ""
        if response.status_code == 200:  # admitted: wait for the answer, so that its file is taken
            page.http.get(f"{url}/gradio_api/queue/data", params={"session_hash": page.session}, timeout=120)
        return response.status_code, detail, took
    finally:
        page.close()


def test_uploads_in_reads_file_payloads_only():
    payloads = [{"path": "/up/a/x.jpg", "meta": {"_type": "gradio.FileData"}}, None, "/up/b/y.jpg", {"path": 3}]
    assert [str(p) for p in uploads_in(payloads)] == ["/up/a/x.jpg"]
    assert uploads_in(None) == []


def test_page_over_the_queue_bound_is_told_busy_and_leaves_no_file(small_queue_app, make_photo):
    photos = [jpeg_photo(make_photo, 90 + k) for k in range(REQUESTS)]
    with ThreadPoolExecutor(REQUESTS) as pool:
        outcomes = list(pool.map(lambda p: _join(small_queue_app.url, p), photos))
    refused = [o for o in outcomes if o[0] != 200]
    assert refused, f"no request was refused: {outcomes}"
    assert all(status == 503 and detail == BUSY_MESSAGE for status, detail, _ in refused), refused
    assert all(took < REFUSED_WITHIN_S for _, _, took in refused), refused
    left = files_left_after(small_queue_app.temp_dir, 5.0)
    assert not left, f"files left after refused and admitted checks: {left}"
    assert "Traceback" not in small_queue_app.log.read_text(errors="replace")


def test_api_over_the_queue_bound_gets_a_plain_refusal(small_queue_app, make_photo, tmp_path):
    paths = photo_files(make_photo, tmp_path, range(110, 110 + REQUESTS))
    clients = [Client(small_queue_app.url + "/", verbose=False, download_files=False) for _ in paths]

    def ask(k: int) -> dict | str:
        try:
            return clients[k].predict(handle_file(str(paths[k])), api_name="/triage")
        except (QueueError, AppError) as err:
            return f"{type(err).__name__}: {err}"

    try:
        with ThreadPoolExecutor(len(paths)) as pool:
            answers = list(pool.map(ask, range(len(paths))))
    finally:
        for client in clients:
            client.close()
    refused = [a for a in answers if isinstance(a, str)]
    answered = [a for a in answers if isinstance(a, dict)]
    assert refused and answered, answers
    assert all(a == "QueueError: Queue is full! Please try again." for a in refused), refused
    assert all("outcome" in a for a in answered), answered
    left = files_left_after(small_queue_app.temp_dir, 5.0)
    assert not left, f"files left after refused and admitted API calls: {left}"
    with httpx.Client(trust_env=False) as http:
        assert http.get(small_queue_app.url + "/").status_code == 200  # still serving
    assert "Traceback" not in small_queue_app.log.read_text(errors="replace")


def _keep_busy(url: str, photo, stop: threading.Event) -> None:
    """A client sending ``photo`` to ``/triage`` back to back until ``stop`` is set (refusals included)."""
    client = Client(url + "/", verbose=False, download_files=False)
    try:
        while not stop.is_set():
            try:
                client.predict(handle_file(str(photo)), api_name="/triage")
            except Exception:  # noqa: BLE001 - refused or slow: it only has to keep the queue busy
                time.sleep(0.05)
    finally:
        client.close()


def test_page_in_a_real_browser_says_busy_when_the_queue_is_full(small_queue_app, make_photo, tmp_path):
    shots = load_script("scripts/screenshots.py")
    if (found := shots.find_browser()) is None:
        pytest.skip("no chromium/chromedriver binary found")
    from selenium.webdriver.support.ui import WebDriverWait

    paths = photo_files(make_photo, tmp_path, range(130, 137))
    stop = threading.Event()
    others = [threading.Thread(target=_keep_busy, args=(small_queue_app.url, p, stop)) for p in paths[1:]]
    driver = shots.make_driver(*found, tmp_path / "chromium-profile")
    try:
        for t in others:
            t.start()
        time.sleep(3)  # the queue fills
        text = ""
        # A click lands in the queue whenever a slot has just come free; a few tries find it full.
        for _ in range(8):
            shots.open_app(driver, small_queue_app.url)
            shots.upload_photo(driver, paths[0])
            shots.visible_panel(driver).find_element("xpath", ".//button[normalize-space()='Check my photo']").click()
            text = WebDriverWait(driver, 120).until(
                lambda d: (
                    (t := d.execute_script("return document.body.innerText;"))
                    and ("busy" in t or "Next step" in t)
                    and t
                )
            )
            if "busy" in text:
                break
    finally:
        stop.set()
        for t in others:
            t.join(timeout=120)
        driver.quit()
    assert "This application is currently busy. Please try again." in text, text[-500:]
    assert "Traceback" not in text and "Queue is full" not in text
