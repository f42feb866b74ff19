"""Shared test helpers: synthetic "photos", a tiny model, the running app and the bundled real data.

The default suite runs on generated images only (no network, no real data).
Synthetic photos are smooth random textures with a few coloured blobs, so
that every image is distinct (flat colours would all look alike to the
near-duplicate detector and to the mosaic detector).

``tiny_model`` is a complete, randomly initialised checkpoint saved exactly as
training saves one; ``app_server`` / ``app_url`` serve the real app
(``serve.py`` in a subprocess, loopback only) on that model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from triage.testing.synthetic import synthetic_photo  # shared with scripts/tiny_dataset.py and the notebooks

REPO = Path(__file__).resolve().parents[1]

#: Backbone of the tiny test checkpoint (the shipped model's, so the real loading code runs).
TINY_ARCH = "mobilenet_v3_small"
#: Seconds ``serve.py`` may take to answer its first request (torch + gradio imports on a busy 2-core machine).
APP_START_TIMEOUT = float(os.environ.get("TRIAGE_TEST_APP_TIMEOUT", "300"))


def add_grain(image: Image.Image, seed: int = 0, sigma: float = 6.0) -> Image.Image:
    """Add fine sensor-like grain, so that a synthetic photo passes the sharpness check (alone, it is too smooth)."""
    arr = np.asarray(image).astype(np.float32)
    arr += np.random.default_rng(seed).normal(0.0, sigma, arr.shape[:2])[:, :, None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def make_photo() -> Callable[..., Image.Image]:
    """A factory ``make_photo(seed, size=None)`` of distinct synthetic photos (same seed, same photo)."""

    def _make(seed: int, size: tuple[int, int] | None = None) -> Image.Image:
        return synthetic_photo(np.random.default_rng(seed), size)

    return _make


@pytest.fixture(scope="session")
def make_mosaic(make_photo) -> Callable[..., Image.Image]:
    """A factory ``make_mosaic(seeds, tile=128)``: four different synthetic photos tiled 2x2."""

    def _make(seeds: tuple[int, int, int, int], tile: int = 128) -> Image.Image:
        mosaic = Image.new("RGB", (2 * tile, 2 * tile))
        for k, seed in enumerate(seeds):
            mosaic.paste(make_photo(seed, (tile, tile)), ((k % 2) * tile, (k // 2) * tile))
        return mosaic

    return _make


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The bundled real datasets (``$TRIAGE_DATA`` or ``../shared/data``); skips the test when absent."""
    root = Path(os.environ.get("TRIAGE_DATA") or (REPO.parent / "shared" / "data"))
    if not (root / "README.md").is_file():
        pytest.skip("../shared/data not present: real-data tests need the bundled datasets (CI has them)")
    return root


def shared_photo(root: Path, manifest_path: str) -> Path:
    """A photo named in ``models/*_manifest.csv`` (``../../shared/data/<source>/...``), found under ``root``.

    The manifests hold paths relative to ``models/``; this reads them from the data root the tests use
    (``$TRIAGE_DATA``), so a checkout elsewhere finds the same photo.
    """
    return root / manifest_path.replace("\\", "/").split("shared/data/", 1)[1]


# -- a tiny but complete model ---------------------------------------------------------------------


def tiny_checkpoint_meta() -> dict:
    """Metadata of a valid triage checkpoint for :data:`TINY_ARCH` (64 px input, no OOD state, uncalibrated)."""
    from triage.checkpoint import checkpoint_meta
    from triage.core.outcomes import OUTCOMES
    from triage.models.backbones import BACKBONES

    spec = BACKBONES[TINY_ARCH]
    return checkpoint_meta(
        version="test-random", arch=TINY_ARCH, classes=list(OUTCOMES), image_size=64, mean=spec.mean,
        std=spec.std, temperature=1.0, refer_threshold=0.5, abstain_threshold=0.0, data_fingerprint="0" * 64,
        ood={}, dropout=0.2,
    )  # fmt: skip


def build_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """Save a randomly initialised but complete checkpoint (and its ``.sha256``) exactly as training does."""
    import torch

    from triage.checkpoint import save_checkpoint
    from triage.core.outcomes import OUTCOMES
    from triage.models.backbones import build_model

    torch.manual_seed(seed)
    save_checkpoint(build_model(TINY_ARCH, len(OUTCOMES), None), tiny_checkpoint_meta(), path)
    return path


def build_fixed_answer_checkpoint(path: Path, outcome: str) -> Path:
    """A complete tiny checkpoint whose network gives ``outcome`` for every photo the safety gate lets through.

    Its last layer ignores the photo (zero weights) and favours ``outcome`` by a wide margin (bias), so the
    engine, the CLI and the app can be run for a chosen answer with nothing replaced.
    """
    import torch

    from triage.checkpoint import save_checkpoint
    from triage.core.outcomes import OUTCOMES
    from triage.models.backbones import build_model

    torch.manual_seed(0)
    model = build_model(TINY_ARCH, len(OUTCOMES), None)
    last = model.classifier[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-10.0)
        last.bias[OUTCOMES.index(outcome)] = 10.0
    save_checkpoint(model, tiny_checkpoint_meta(), path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Path of a small random-weight triage checkpoint with its ``.sha256`` (shared: copy it before damaging it)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_model") / "model.pt")


# -- the running app -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppServer:
    """The app served by ``serve.py`` for the tests.

    Attributes:
        url: base URL without a trailing slash, e.g. ``http://127.0.0.1:40123``.
        port: its loopback port.
        log: the server's stdout and stderr (to check what it logs).
        temp_dir: ``GRADIO_TEMP_DIR`` of the server: the only place Gradio writes uploads.
        process: the ``serve.py`` process.
    """

    url: str
    port: int
    log: Path
    temp_dir: Path
    process: subprocess.Popen

    def assert_alive(self) -> None:
        """Fail, with the end of the server's log, if ``serve.py`` has exited (say, crashed on an upload)."""
        code = self.process.poll()
        assert code is None, f"serve.py exited with code {code}; end of its log:\n{_log_tail(self.log)}"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-chars:] if log.is_file() else "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def load_corpus_module():
    """The hostile-input corpus generators (:mod:`triage.testing.corpus`)."""
    from triage.testing import corpus

    return corpus


def start_app(model: Path, workdir: Path, attempts: int = 3) -> AppServer:
    """Start ``serve.py --model <model>`` on 127.0.0.1 at a free port and wait until it answers.

    Tries a new port when the chosen one was taken in the meantime. Login is never enabled (``TRIAGE_USER`` /
    ``TRIAGE_PASSWORD`` are dropped), nor anything that sends data out (analytics off).

    Raises:
        RuntimeError: the app did not come up; the message carries the end of its log.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "TRIAGE_USER", "TRIAGE_PASSWORD"))}
    temp_dir = workdir / "gradio_tmp"
    temp_dir.mkdir(parents=True, exist_ok=True)
    env |= {
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(temp_dir),
        "PYTHONUNBUFFERED": "1",
        # A proxy in the environment must not see loopback traffic (Gradio checks its own URL at launch).
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    error = ""
    for attempt in range(attempts):
        port = free_port()
        log = workdir / f"serve-{attempt}.log"
        cmd = [sys.executable, str(REPO / "serve.py"), "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--model", str(model)]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + APP_START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                # A direct opener: no proxy, whatever the environment says.
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "/", timeout=5) as r:
                    if r.status == 200:
                        return AppServer(url, port, log, temp_dir, proc)
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        why = (
            f"exited with code {proc.returncode}"
            if proc.poll() is not None
            else f"gave no answer in {APP_START_TIMEOUT:.0f} s"
        )
        _stop(proc)
        error = f"serve.py {why} on {url}; end of its log:\n{_log_tail(log)}"
        # Only a port taken between free_port() and the bind is worth another try.
        if not any(m in error.lower() for m in ("address already in use", "empty port")):
            break
    raise RuntimeError(error)


def start_app_with(model: Path, workdir: Path, sitecustomize: str) -> AppServer:
    """:func:`start_app` with ``sitecustomize`` (Python source) run first in the server, e.g. to tighten a limit."""
    site = workdir / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(sitecustomize, encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        # Ahead of any path already set: sitecustomize runs before the script's folder joins sys.path, so what it
        # imports comes from PYTHONPATH (this tree) or the installed package.
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
        return start_app(model, workdir)


class PageCalls:
    """The calls the page makes: upload a file, then run an event through the queue (also the API-hidden tabs)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(trust_env=False, timeout=60)  # loopback only: no proxy from the environment
        self.session = uuid.uuid4().hex[:12]
        deps = self.http.get(f"{base}/config").raise_for_status().json()["dependencies"]
        self.fn_index = {d["api_name"]: d["id"] for d in deps if d.get("api_name")}

    def upload(self, name: str, data: bytes) -> dict:
        """Upload ``data`` as the page does; returns the file payload an event takes."""
        files = {"files": (name, data, "application/octet-stream")}
        (path,) = self.http.post(f"{self.base}/gradio_api/upload", files=files).raise_for_status().json()
        return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    def run(self, fn_name: str, data: list) -> list:
        """Run the event named ``fn_name`` (the handler's name) and return its outputs."""
        body = {"data": data, "fn_index": self.fn_index[fn_name], "session_hash": self.session}
        self.http.post(f"{self.base}/gradio_api/queue/join", json=body).raise_for_status()
        url = f"{self.base}/gradio_api/queue/data"
        with self.http.stream("GET", url, params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        assert msg.get("success"), msg
                        return msg["output"]["data"]
        raise AssertionError(f"{fn_name}: no answer")

    def fetch(self, file_data: dict) -> bytes:
        """The bytes of a file the app returned."""
        return self.http.get(file_data["url"]).raise_for_status().content

    def close(self) -> None:
        """Close the connection (an open one holds Gradio's shutdown cleanup back)."""
        self.http.close()


def data_url_bytes(html: str) -> bytes:
    """The bytes carried by the first ``data:...;base64,`` URL in ``html`` (the heatmap, the summary link)."""
    import base64
    import re

    found = re.search(r"data:[^'\"]*;base64,([A-Za-z0-9+/=]+)", html)
    assert found, f"no data: URL in {html[:200]!r}"
    return base64.b64decode(found.group(1))


def files_under(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (Gradio's upload folder: each upload is one such file)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def files_left_after(folder: Path, seconds: float = 5.0) -> list[Path]:
    """Files still under ``folder`` after waiting up to ``seconds`` for it to empty (returns early when it does)."""
    deadline = time.monotonic() + seconds
    while (left := files_under(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture(scope="session")
def app_server(tiny_model, tmp_path_factory) -> Iterator[AppServer]:
    """The real app (``serve.py``) on :func:`tiny_model`, on loopback at a free port, for the whole session."""
    try:
        server = start_app(tiny_model, tmp_path_factory.mktemp("app"))
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    # The test process talks to it too (gradio_client, urllib): keep any proxy away from loopback.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        try:
            yield server
        finally:
            _stop(server.process)


@pytest.fixture(scope="session")
def app_url(app_server) -> str:
    """Base URL of the running app, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
    return app_server.url
