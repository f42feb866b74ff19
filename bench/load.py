"""Load test: concurrent gradio_client clients against the real app (``serve.py``) for a fixed time.

Usage:
    python bench/load.py [--model models/triage-mnv3s.pt] [--clients 4] [--duration 20] [--rounds 2]
                         [--photo-size 1600x1200] [--out results/load.json]

Starts ``serve.py --model MODEL`` on 127.0.0.1 at a free port (loopback only, its own ``GRADIO_TEMP_DIR``),
then runs ``--rounds`` rounds: in each, ``--clients`` threads, each with its own ``gradio_client.Client``,
send skin-like JPEGs to the ``/triage`` API back to back for ``--duration`` seconds. It reports requests
served, errors (any exception, timeout or ``{"error": ...}`` answer: the photos are all valid, so this must be
0), latency p50 / p95 / max (upload + queue + check, as a client sees it) and the server's memory: resident
size after warm-up ("before"), after each round, and its peak. Memory must not keep growing: the resident
size after the last round may exceed the one after the first round by at most ``--max-growth-mb``.

Five seconds after the last answer the files in the server's upload folder are counted (each photo's file
is deleted as soon as it is read, so this must be 0), then the server is stopped with SIGINT (as Ctrl-C) and
the files left in its temporary folder are counted again. Exit code 1 when there were errors, memory grew
past the bound or a file was left in the upload folder; the JSON (settings included) goes to ``--out``.
Keep runs bounded: at most 64 clients and 600 s per round.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from triage.inference import limits

REPO = Path(__file__).resolve().parents[1]

DEFAULT_MODEL = REPO / "models" / "triage-mnv3s.pt"
DEFAULT_OUT = REPO / "results" / "load.json"
MAX_CLIENTS = 64
MAX_DURATION_S = 600.0
#: Longest one request may take before it counts as an error (well above the app's own request timeout).
REQUEST_TIMEOUT_S = limits.REQUEST_TIMEOUT_S + 30
#: Seconds after the last answer at which the upload folder's files are counted.
UPLOAD_CHECK_AFTER_S = 5.0


# -- the server ----------------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_sigint() -> None:
    # A child inherits an ignored SIGINT (e.g. from a background shell job); the graceful stop needs it back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Server:
    """A running ``serve.py``."""

    process: subprocess.Popen
    url: str
    log: Path
    temp_dir: Path

    def status_mb(self, field_name: str) -> float:
        """``VmRSS`` / ``VmHWM`` of the server process from ``/proc``, in MB."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M).group(1)) / 1024

    def cpu_s(self) -> float:
        """CPU time (user + system) the server process has used so far, in seconds."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 30) -> bool:
        """SIGINT, as Ctrl-C (Gradio cleans its cache on the way out); kill if it hangs. True if it stopped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
                return False
        return True


def start_server(model: Path, work: Path, start_timeout: float = 300) -> Server:
    """Start ``serve.py`` on 127.0.0.1 at a free port and wait until its page answers.

    Raises:
        RuntimeError: it exited or did not answer in time (the message has the end of its log).
    """
    temp_dir = work / "gradio_tmp"
    temp_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "TRIAGE_USER", "TRIAGE_PASSWORD"))}
    env |= {
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(temp_dir),
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "serve.log"
    cmd = [sys.executable, str(REPO / "serve.py"), "--host", "127.0.0.1", "--port", str(port), "--model", str(model)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)
    server = Server(proc, url, log, temp_dir)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with opener.open(url + "/", timeout=5) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    server.stop(timeout=10)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"serve.py (exit code {proc.returncode}) did not answer on {url}:\n{tail}")


# -- the load ------------------------------------------------------------------------------------------------


def skin_photo(width: int, height: int, seed: int) -> bytes:
    """A skin-toned, smoothly textured JPEG with a few darker spots (distinct per seed)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 1, (height // 32 + 2, width // 32 + 2, 3))
    base = np.array([205, 150, 125], dtype=np.float32) + coarse * 10
    image = Image.fromarray(np.uint8(np.clip(base, 0, 255))).resize((width, height), Image.Resampling.BICUBIC)
    arr = np.asarray(image, dtype=np.float32).copy()
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(4):
        cx, cy, r = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height, rng.uniform(0.02, 0.06) * width
        arr[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] *= 0.8
    buf = io.BytesIO()
    Image.fromarray(np.uint8(np.clip(arr, 0, 255))).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@dataclass
class RoundResult:
    """One round of load."""

    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    #: ``time.monotonic()`` when the last answer of the round came back.
    last_answer_at: float = 0.0

    def summary(self) -> dict:
        """Counts and latency percentiles (ms)."""
        lat = sorted(self.latencies_ms)
        pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if lat else (lambda q: None)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "max_ms": round(max(lat), 1) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
            "throughput_rps": round(self.requests / self.wall_s, 2) if self.wall_s else None,
            "wall_s": round(self.wall_s, 1),
            "error_samples": self.error_samples[:5],
        }


def run_round(url: str, photos: list[Path], clients: int, duration_s: float) -> RoundResult:
    """``clients`` threads send photos to ``/triage`` back to back until ``duration_s`` has passed."""
    from gradio_client import Client, handle_file

    result = RoundResult()
    lock = threading.Lock()
    connections = [
        Client(url + "/", verbose=False, analytics_enabled=False, download_files=False) for _ in range(clients)
    ]
    start_gate = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(k: int) -> None:
        client = connections[k]
        start_gate.wait()
        i = k
        while time.monotonic() < deadline[0]:
            photo = photos[i % len(photos)]
            i += clients
            t0 = time.perf_counter()
            error = None
            try:
                answer = client.submit(handle_file(str(photo)), api_name="/triage").result(timeout=REQUEST_TIMEOUT_S)
                if not isinstance(answer, dict) or "outcome" not in answer:
                    error = f"answer without an outcome: {str(answer)[:200]}"
            except Exception as err:  # noqa: BLE001 - every failure is counted and sampled
                error = f"{type(err).__name__}: {str(err)[:200]}"
            took = (time.perf_counter() - t0) * 1e3
            with lock:
                result.last_answer_at = max(result.last_answer_at, time.monotonic())
                result.requests += 1
                result.latencies_ms.append(took)
                if error:
                    result.errors += 1
                    result.error_samples.append(error)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + duration_s
    t_start = time.perf_counter()
    start_gate.wait()
    for t in threads:
        t.join(timeout=duration_s + REQUEST_TIMEOUT_S + 30)
    result.wall_s = time.perf_counter() - t_start
    for client in connections:
        client.close()
    return result


def sha256_short(path: Path) -> str:
    """First 16 hex digits of the file's sha256."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def parse_size(text: str) -> tuple[int, int]:
    """``"1600x1200"`` -> ``(1600, 1200)``."""
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def main(argv: list[str] | None = None) -> int:
    """Start the app, load it, write the JSON; exit 1 on errors or memory growth past the bound."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--duration", type=float, default=20.0, help="seconds per round (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="rounds, to see whether memory keeps growing (default 2)")
    p.add_argument("--photos", type=int, default=8, help="distinct photos cycled through (default 8)")
    p.add_argument("--photo-size", type=parse_size, default=(1600, 1200), help="WxH (default 1600x1200)")
    p.add_argument("--max-growth-mb", type=float, default=50.0, help="allowed RSS growth, round 1 to last")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.duration <= MAX_DURATION_S or args.rounds < 1:
        p.error(f"--clients must be 1..{MAX_CLIENTS}, --duration 0..{MAX_DURATION_S:.0f} s, --rounds >= 1")
    if args.clients > limits.QUEUE_MAX_SIZE:
        print(f"note: {args.clients} clients > queue size {limits.QUEUE_MAX_SIZE}: expect 'queue full' errors")

    with tempfile.TemporaryDirectory(prefix="triage-load-") as tmp:
        work = Path(tmp)
        photos = []
        for k in range(args.photos):
            path = work / f"photo{k}.jpg"
            path.write_bytes(skin_photo(*args.photo_size, seed=k))
            photos.append(path)
        t0 = time.perf_counter()
        server = start_server(args.model, work)
        startup_s = time.perf_counter() - t0
        try:
            warm = run_round(server.url, photos, clients=min(args.clients, 2), duration_s=2.0)
            if warm.errors:
                raise RuntimeError(f"warm-up failed: {warm.error_samples[:2]}")
            rss_before = server.status_mb("VmRSS")
            results, rss_after, context = [], [], []
            for r in range(args.rounds):
                cpu0 = server.cpu_s()
                results.append(run_round(server.url, photos, args.clients, args.duration))
                rss_after.append(round(server.status_mb("VmRSS"), 1))
                # Whether the server was busy or starved by other work on the machine, to read the latencies by.
                context.append(
                    {"server_cpu_s": round(server.cpu_s() - cpu0, 1), "load_avg_1m": round(os.getloadavg()[0], 2)}
                )
                print(f"round {r + 1}: {json.dumps(results[-1].summary())} rss {rss_after[-1]} MB {context[-1]}")
            peak = server.status_mb("VmHWM")
            # The bar: no photo file in the upload folder 5 s after the last answer.
            time.sleep(max(0.0, results[-1].last_answer_at + UPLOAD_CHECK_AFTER_S - time.monotonic()))
            in_upload_folder = [q for q in server.temp_dir.rglob("*") if q.is_file()]
        finally:
            stopped = server.stop()
            left = [q for q in server.temp_dir.rglob("*") if q.is_file() and q.stat().st_size]
            log_text = server.log.read_text(errors="replace")

    # Over every request of every round (not an average of per-round percentiles).
    total = RoundResult(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        latencies_ms=[x for r in results for x in r.latencies_ms],
        error_samples=[x for r in results for x in r.error_samples],
        wall_s=sum(r.wall_s for r in results),
    ).summary()
    growth = round(rss_after[-1] - rss_after[0], 1)
    out = {
        "settings": {
            "clients": args.clients,
            "duration_s_per_round": args.duration,
            "rounds": args.rounds,
            "photo_size": "x".join(map(str, args.photo_size)),
            "distinct_photos": args.photos,
            "endpoint": "/triage (gradio_client, loopback)",
            "app_concurrency_limit": limits.CONCURRENCY_LIMIT,
            "app_queue_max_size": limits.QUEUE_MAX_SIZE,
            "model": str(args.model),
            "model_sha256_16": sha256_short(args.model),
            "max_growth_mb": args.max_growth_mb,
        },
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "startup_s": round(startup_s, 1),
        "requests": total["requests"],
        "errors": total["errors"],
        "p50_ms": total["p50_ms"],
        "p95_ms": total["p95_ms"],
        "max_ms": total["max_ms"],
        "throughput_rps": total["throughput_rps"],
        "rounds": [r.summary() | c for r, c in zip(results, context, strict=True)],
        "rss_mb": {"before": round(rss_before, 1), "after_each_round": rss_after, "peak": round(peak, 1)},
        "rss_growth_first_to_last_round_mb": growth,
        "files_in_upload_folder_5s_after_last_answer": len(in_upload_folder),
        "stopped_cleanly": stopped,
        "files_left_in_gradio_temp_after_stop": len(left),
        "tracebacks_in_server_log": log_text.count("Traceback"),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    ok = total["errors"] == 0 and growth <= args.max_growth_mb and not in_upload_folder
    out["pass"] = ok
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
