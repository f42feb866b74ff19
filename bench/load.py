"""Load test: concurrent gradio_client clients against the real app (``serve.py``) for a fixed time.

Usage:
    python bench/load.py [--model models/triage-mnv3s.pt] [--clients 4] [--duration 20] [--rounds 2]
                         [--photo-size 1600x1200] [--hostile-every N] [--rss-every S --warmup S] [--out ...]

Starts ``serve.py --model MODEL`` on 127.0.0.1 at a free port (loopback only, its own ``GRADIO_TEMP_DIR``),
then runs ``--rounds`` rounds: in each, ``--clients`` threads, each with its own ``gradio_client.Client``,
send skin-like JPEGs to the ``/triage`` API back to back for ``--duration`` seconds (``--hostile-every N``:
every N-th request of a client carries the next file of the hostile-upload corpus instead, which must get the
answer the corpus expects). It reports requests served, errors (any exception, timeout or wrong answer: this
must be 0), requests refused as "busy" by a full queue (counted apart, not as errors), latency p50 / p95 / max
of the admitted valid photos (upload + queue + check, as a client sees it) and the server's memory: resident
size after warm-up, after each round and its peak; the growth from round 1 to the last must stay within
``--max-growth-mb``, or with ``--rss-every`` (a sample every S seconds) the growth of the resident floor after
``--warmup`` seconds (see :meth:`RssSampler.growth_after`) must stay under it.

Five seconds after the last answer the files in the server's upload folder are counted (this must be 0),
then the server is stopped with SIGINT (as Ctrl-C) and the files left in its temporary folder are counted
again. Exit code 1 on an error, a traceback in the server's log, memory growth past the bound or a file left
in the upload folder; the JSON (command and settings included) goes to ``--out``. At most 64 clients and
600 s per round.
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
from triage.testing.hostile_mix import Upload, hostile_uploads, judge

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
    #: Requests the queue turned away as full (``QueueError``): told "busy", not failed.
    refused_busy: int = 0
    #: Requests that carried a file from the hostile-upload corpus.
    hostile: int = 0
    #: Latencies of the valid photos that were admitted (hostile files and refusals left out).
    latencies_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    #: ``time.monotonic()`` when the last answer of the round came back.
    last_answer_at: float = 0.0

    def record(self, upload: Upload, took_ms: float, error: str | None, refused: bool) -> None:
        """Count one request (the caller holds the round's lock)."""
        self.last_answer_at = max(self.last_answer_at, time.monotonic())
        self.requests += 1
        self.hostile += upload.hostile
        self.refused_busy += refused
        if error:
            self.errors += 1
            self.error_samples.append(error)
        elif not refused and not upload.hostile:
            self.latencies_ms.append(took_ms)

    def summary(self) -> dict:
        """Counts and latency percentiles (ms)."""
        lat = sorted(self.latencies_ms)
        pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if lat else (lambda q: None)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "refused_busy": self.refused_busy,
            "hostile": self.hostile,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "max_ms": round(max(lat), 1) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
            "throughput_rps": round(self.requests / self.wall_s, 2) if self.wall_s else None,
            "wall_s": round(self.wall_s, 1),
            "error_samples": self.error_samples[:5],
        }


def send(client, upload: Upload) -> tuple[str | None, bool]:
    """Send one file to ``/triage``: ``(what was wrong or None, whether the queue refused it as full)``."""
    from gradio_client import handle_file
    from gradio_client.utils import QueueError

    try:
        answer = client.submit(handle_file(str(upload.path)), api_name="/triage").result(timeout=REQUEST_TIMEOUT_S)
    except QueueError:
        return None, True
    except ValueError as err:  # a file over the upload cap is refused by the client before it is sent
        if upload.hostile and "exceeds the maximum file size" in str(err):
            return None, False
        return f"ValueError: {str(err)[:200]}", False
    except Exception as err:  # noqa: BLE001 - every failure is counted and sampled
        return f"{type(err).__name__}: {str(err)[:200]}", False
    return judge(answer, upload), False


def run_round(
    url: str, photos: list[Path], clients: int, duration_s: float, hostile: list[Upload] = (), hostile_every: int = 0
) -> RoundResult:
    """``clients`` threads send photos to ``/triage`` back to back until ``duration_s`` has passed.

    With ``hostile`` files and ``hostile_every`` = n, every n-th request of each client carries the next hostile
    file instead of a photo.
    """
    from gradio_client import Client

    result = RoundResult()
    lock = threading.Lock()
    connections = [
        Client(url + "/", verbose=False, analytics_enabled=False, download_files=False) for _ in range(clients)
    ]
    start_gate = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(k: int) -> None:
        start_gate.wait()
        sent = 0
        while time.monotonic() < deadline[0]:
            sent += 1
            if hostile and hostile_every and sent % hostile_every == 0:
                upload = hostile[(k + sent // hostile_every) % len(hostile)]
            else:
                upload = Upload(photos[(k + sent * clients) % len(photos)])
            t0 = time.perf_counter()
            error, refused = send(connections[k], upload)
            with lock:
                result.record(upload, (time.perf_counter() - t0) * 1e3, error, refused)

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


class RssSampler:
    """Samples the server's resident memory every ``every_s`` seconds in a thread, from its creation on."""

    def __init__(self, server: Server, every_s: float) -> None:
        self.server, self.every_s = server, every_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()
        self._thread.start()

    def _sample(self) -> None:
        self.samples.append((round(time.monotonic() - self._t0, 1), round(self.server.status_mb("VmRSS"), 1)))

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.every_s):
                return

    def stop(self) -> None:
        """Take one last sample and stop."""
        self._stop.set()
        self._thread.join()
        self._sample()

    def growth_after(self, warmup_s: float, window: int = 5) -> float | None:
        """The lowest of the last ``window`` samples minus the lowest of the first ``window`` after ``warmup_s``.

        The floor, not the peak: a check of a large photo in flight holds a few hundred MB for a moment, which a
        sample may catch; memory the app keeps raises every sample. ``None``: too short a run."""
        after = [mb for t, mb in self.samples if t >= warmup_s]
        window = min(window, len(after) // 2)
        return round(min(after[-window:]) - min(after[:window]), 1) if window else None


def tracebacks_in(log_text: str, limit: int = 3) -> tuple[int, list[str]]:
    """How many tracebacks the server logged, and the first ``limit`` of them (each up to its exception line)."""
    blocks = re.findall(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*.*", log_text)
    return log_text.count("Traceback"), [b[-2000:] for b in blocks[:limit]]


def sha256_short(path: Path) -> str:
    """First 16 hex digits of the file's sha256 (a model file: read whole)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def parse_size(text: str) -> tuple[int, int]:
    """``"1600x1200"`` -> ``(1600, 1200)``."""
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked against the bounds."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--duration", type=float, default=20.0, help="seconds per round (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="rounds, to see whether memory keeps growing (default 2)")
    p.add_argument("--photos", type=int, default=8, help="distinct photos cycled through (default 8)")
    p.add_argument("--photo-size", type=parse_size, default=(1600, 1200), help="WxH (default 1600x1200)")
    p.add_argument("--max-growth-mb", type=float, default=50.0, help="allowed RSS growth (round 1 to last; soak)")
    p.add_argument("--hostile-every", type=int, default=0, help="every n-th request a hostile corpus file (0: none)")
    p.add_argument("--rss-every", type=float, default=0.0, help="sample RSS every this many seconds (0: off)")
    p.add_argument("--warmup", type=float, default=300.0, help="with --rss-every: growth counted after this (s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.duration <= MAX_DURATION_S or args.rounds < 1:
        p.error(f"--clients must be 1..{MAX_CLIENTS}, --duration 0..{MAX_DURATION_S:.0f} s, --rounds >= 1")
    if args.hostile_every < 0 or args.rss_every < 0:
        p.error("--hostile-every and --rss-every must be >= 0")
    if args.clients > limits.QUEUE_MAX_SIZE + limits.CONCURRENCY_LIMIT:
        print(f"note: {args.clients} clients > queue size {limits.QUEUE_MAX_SIZE} + running: expect 'busy' refusals")
    return args


@dataclass
class Measured:
    """What one run measured on the server."""

    startup_s: float
    rss_before: float
    results: list[RoundResult]
    rss_after: list[float]
    context: list[dict]
    peak: float
    in_upload_folder: list[Path]
    stopped: bool
    left: list[Path]
    log_text: str
    sampler: RssSampler | None


def measure(args: argparse.Namespace, work: Path) -> Measured:
    """Start the app, warm it up, run the rounds (sampling RSS if asked), count files, stop it."""
    photos = []
    for k in range(args.photos):
        path = work / f"photo{k}.jpg"
        path.write_bytes(skin_photo(*args.photo_size, seed=k))
        photos.append(path)
    hostile = hostile_uploads(work) if args.hostile_every else []
    t0 = time.perf_counter()
    server = start_server(args.model, work)
    startup_s = time.perf_counter() - t0
    sampler = None
    try:
        warm = run_round(server.url, photos, clients=min(args.clients, 2), duration_s=2.0)
        if warm.errors:
            raise RuntimeError(f"warm-up failed: {warm.error_samples[:2]}")
        rss_before = server.status_mb("VmRSS")
        sampler = RssSampler(server, args.rss_every) if args.rss_every else None
        results, rss_after, context = [], [], []
        for r in range(args.rounds):
            cpu0 = server.cpu_s()
            results.append(run_round(server.url, photos, args.clients, args.duration, hostile, args.hostile_every))
            rss_after.append(round(server.status_mb("VmRSS"), 1))
            # Whether the server was busy or starved by other work on the machine, to read the latencies by.
            context.append(
                {"server_cpu_s": round(server.cpu_s() - cpu0, 1), "load_avg_1m": round(os.getloadavg()[0], 2)}
            )
            print(
                f"round {r + 1}: {json.dumps(results[-1].summary())} rss {rss_after[-1]} MB {context[-1]}", flush=True
            )
        if sampler:
            sampler.stop()
        peak = server.status_mb("VmHWM")
        # The bar: no photo file in the upload folder 5 s after the last answer.
        time.sleep(max(0.0, results[-1].last_answer_at + UPLOAD_CHECK_AFTER_S - time.monotonic()))
        in_upload_folder = [q for q in server.temp_dir.rglob("*") if q.is_file()]
    finally:
        stopped = server.stop()
        left = [q for q in server.temp_dir.rglob("*") if q.is_file() and q.stat().st_size]
        log_text = server.log.read_text(errors="replace")
    return Measured(
        startup_s, rss_before, results, rss_after, context, peak, in_upload_folder, stopped, left, log_text, sampler
    )


def summarise(args: argparse.Namespace, argv: list[str], m: Measured) -> dict:
    """The JSON written to ``--out``, with ``"pass"``."""
    # Over every request of every round (not an average of per-round percentiles).
    total = RoundResult(
        requests=sum(r.requests for r in m.results),
        errors=sum(r.errors for r in m.results),
        refused_busy=sum(r.refused_busy for r in m.results),
        hostile=sum(r.hostile for r in m.results),
        latencies_ms=[x for r in m.results for x in r.latencies_ms],
        error_samples=[x for r in m.results for x in r.error_samples],
        wall_s=sum(r.wall_s for r in m.results),
    ).summary()
    growth = round(m.rss_after[-1] - m.rss_after[0], 1)
    soak_growth = m.sampler.growth_after(args.warmup) if m.sampler else None
    tracebacks, traceback_samples = tracebacks_in(m.log_text)
    out = {
        "command": "python bench/load.py " + " ".join(argv),
        "settings": {
            "clients": args.clients,
            "duration_s_per_round": args.duration,
            "rounds": args.rounds,
            "photo_size": "x".join(map(str, args.photo_size)),
            "distinct_photos": args.photos,
            "hostile_every": args.hostile_every,
            "endpoint": "/triage (gradio_client, loopback)",
            "app_concurrency_limit": limits.CONCURRENCY_LIMIT,
            "app_queue_max_size": limits.QUEUE_MAX_SIZE,
            "model": os.path.relpath(args.model, REPO),
            "model_sha256_16": sha256_short(args.model),
            "max_growth_mb": args.max_growth_mb,
        },
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "startup_s": round(m.startup_s, 1),
    }
    out |= {k: total[k] for k in ("requests", "errors", "refused_busy", "hostile", "p50_ms", "p95_ms", "max_ms")}
    out |= {
        "throughput_rps": total["throughput_rps"],
        "error_samples": total["error_samples"],
        "rounds": [r.summary() | c for r, c in zip(m.results, m.context, strict=True)],
        "rss_mb": {"before": round(m.rss_before, 1), "after_each_round": m.rss_after, "peak": round(m.peak, 1)},
        "rss_growth_first_to_last_round_mb": growth,
        "files_in_upload_folder_5s_after_last_answer": len(m.in_upload_folder),
        "stopped_cleanly": m.stopped,
        "files_left_in_gradio_temp_after_stop": len(m.left),
        "tracebacks_in_server_log": tracebacks,
        "traceback_samples": traceback_samples,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if m.sampler:
        out["rss_samples_mb"] = [[t, mb] for t, mb in m.sampler.samples]
        out["rss_growth_after_warmup_mb"] = soak_growth
        out["warmup_s"] = args.warmup
    out["pass"] = (
        total["errors"] == 0
        and tracebacks == 0
        and (soak_growth < args.max_growth_mb if m.sampler else growth <= args.max_growth_mb)
        and not m.in_upload_folder
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """Start the app, load it, write the JSON; exit 1 on errors, a traceback, a file left or memory growth."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="triage-load-") as tmp:
        measured = measure(args, Path(tmp))
    out = summarise(args, argv, measured)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))
    return 0 if out["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
