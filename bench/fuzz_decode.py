"""Fuzz the decode-and-check path (``decode_upload`` + ``assess_quality``) from the hostile-upload corpus.

Usage:
    python bench/fuzz_decode.py [--runs 20000] [--seed 1] [--engine atheris|builtin] [--out results/fuzz.json]

Seeds are the corpus of ``triage.testing.corpus`` (without the 108 MP JPEG, which only slows mutation down).
Every input must end as a clean photo or an ``UploadError`` with a sentence; anything else is a finding:

* another exception escaping ``decode_upload`` or the quality checks (a traceback the person would see);
* a decoded photo that breaks the contract: not RGB, empty, larger than ``DEFAULT_MAX_SIDE``, metadata left in
  ``info``, or a quality measure that is not a finite number (NaN compares false with every threshold, so it
  would slip through the quality gate);
* one input taking longer than ``--timeout`` seconds (a hang), or the process passing ``--rss-limit-mb``.

Engines: ``atheris`` (coverage-guided libFuzzer, Python code of Pillow and ``triage`` instrumented; the default
when installed) runs in a child process so this script can summarise it; ``builtin`` is a seeded random
mutator (bit flips, interesting integers, truncation, insertion, duplication, splicing) needing nothing
extra; the test suite uses it for its smoke run. Both repair PNG chunk CRCs on half of their PNG mutants,
or Pillow would refuse nearly all of them at the first CRC check and the deeper code would go untested.

Findings are written to ``--findings`` (default ``artifacts/fuzz``, git-ignored); once fixed, add each as a
case in ``triage/testing/corpus.py`` so the suite replays it. The JSON summary goes to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DEFAULT_OUT = REPO / "results" / "fuzz.json"
DEFAULT_FINDINGS = REPO / "artifacts" / "fuzz"
#: Longest input the fuzzer builds (the seeds are all smaller; big inputs only slow each run down).
MAX_LEN = 256 * 1024
#: Byte patterns that often sit on a boundary in a header field (sizes, counts, offsets).
INTERESTING = (
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x00\x00",
    b"\xff\xff",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\x00\x01\x00\x00",
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Finding(Exception):
    """An input that broke the contract of the decode-and-check path."""


def _load_corpus_module():
    """The hostile-input corpus generators (:mod:`triage.testing.corpus`), as the tests use them."""
    from triage.testing import corpus

    return corpus


def corpus_seeds() -> dict[str, bytes]:
    """Every corpus case that can be made here, except the 108 MP JPEG: ``{name: bytes}``."""
    corpus = _load_corpus_module()
    seeds = {}
    for case in corpus.CASES:
        if case.name.startswith("huge_"):
            continue
        data = case.make()
        if data is not None and len(data) <= MAX_LEN:
            seeds[case.name] = data
    return seeds


# -- the target ----------------------------------------------------------------------------------------------


def check_one(data: bytes) -> str:
    """Run one input through decoding and the quality checks; return ``"ok"`` or the ``UploadError`` code.

    Raises:
        Finding: the result breaks the contract (see the module docstring). Any other exception is a
            finding too: it escaped the path.
    """
    from triage.core.quality import assess_quality
    from triage.inference.decode import DEFAULT_MAX_SIDE, UploadError, decode_upload

    try:
        photo = decode_upload(data)
    except UploadError as err:
        message = err.user_message
        if not message or not message.strip().endswith(".") or "Traceback" in message:
            raise Finding(f"UploadError {err.code!r} without a plain sentence: {message!r}") from None
        return err.code
    image = photo.image
    width, height = image.size
    if image.mode != "RGB" or width < 1 or height < 1 or max(width, height) > DEFAULT_MAX_SIDE:
        raise Finding(f"bad decoded image: mode {image.mode}, size {image.size}")
    if image.info or len(image.getexif()):
        raise Finding(f"metadata survived decoding: {sorted(image.info)}")
    if photo.frames < 1 or min(photo.original_size) < 1:
        raise Finding(f"bad frames/original_size: {photo.frames}, {photo.original_size}")
    report = assess_quality(image)
    bad = {k: v for k, v in report.measures.items() if not math.isfinite(float(v))}
    if bad:
        raise Finding(f"quality measures not finite: {bad}")
    return "ok"


# -- structure-aware help for PNG ----------------------------------------------------------------------------


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute the CRC of every complete PNG chunk, so a mutated PNG gets past Pillow's CRC check."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    out = bytearray(data)
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(out):
        (length,) = struct.unpack(">I", out[pos : pos + 4])
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4 : end])) & 0xFFFFFFFF)
        pos = end + 4
    return bytes(out)


# -- builtin engine ------------------------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random, others: Sequence[bytes]) -> bytes:
    """One to four random edits of ``data`` (PNG CRCs repaired on half of the PNG mutants)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf.extend(rng.randbytes(rng.randint(1, 16)))
            continue
        pos = rng.randrange(len(buf))
        op = rng.randrange(7)
        if op == 0:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos] = rng.randrange(256)
        elif op == 2:
            value = rng.choice(INTERESTING)
            buf[pos : pos + len(value)] = value
        elif op == 3:
            del buf[pos:]
        elif op == 4:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 32))
        elif op == 5:
            size = rng.randint(1, 64)
            buf[pos:pos] = buf[pos : pos + size]
        else:
            other = rng.choice(others)
            buf[pos:] = other[rng.randrange(len(other) + 1) :]
    out = bytes(buf[:MAX_LEN])
    return fix_png_crcs(out) if rng.random() < 0.5 else out


@dataclass
class FuzzReport:
    """What a run did and found (JSON via :func:`dataclasses.asdict`)."""

    engine: str
    runs: int
    seed: int
    seeds: int
    elapsed_s: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    slowest_s: float = 0.0
    findings: list[dict] = field(default_factory=list)


def _save_finding(folder: Path | None, data: bytes, kind: str) -> str:
    if folder is None:
        return ""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    return str(path)


def run_builtin(
    seeds: Sequence[bytes],
    runs: int,
    seed: int = 0,
    timeout_s: float = 10.0,
    findings_dir: Path | None = None,
    target: Callable[[bytes], str] = check_one,
) -> FuzzReport:
    """Fuzz ``target`` with :func:`mutate` for exactly ``runs`` inputs (seeds themselves first).

    Args:
        seeds: starting inputs (non-empty).
        runs: number of inputs to try, seeds included.
        seed: RNG seed: the same seed gives the same inputs.
        timeout_s: an input slower than this is a finding (it cannot be interrupted, only measured).
        findings_dir: where to save inputs that gave a finding (``None``: don't save).
        target: the function under test (:func:`check_one`).
    """
    rng = random.Random(seed)
    pool = [s for s in seeds if s]
    report = FuzzReport(engine="builtin", runs=runs, seed=seed, seeds=len(pool))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the corrupt files we make on purpose.
        for i in range(runs):
            data = pool[i] if i < len(pool) else mutate(rng.choice(pool), rng, pool)
            t0 = time.perf_counter()
            try:
                outcome = target(data)
            except Exception as err:  # noqa: BLE001 - every escaping exception is exactly what we look for
                outcome = "finding"
                detail = "".join(traceback.format_exception_only(type(err), err)).strip()[:300]
                report.findings.append(
                    {"kind": "crash", "detail": detail, "input": _save_finding(findings_dir, data, "crash")}
                )
            took = time.perf_counter() - t0
            report.slowest_s = max(report.slowest_s, took)
            if took > timeout_s:
                report.findings.append(
                    {"kind": "slow", "detail": f"{took:.1f}s", "input": _save_finding(findings_dir, data, "slow")}
                )
            report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
    report.elapsed_s = round(time.perf_counter() - start, 2)
    report.slowest_s = round(report.slowest_s, 3)
    return report


# -- atheris engine (in a child process: libFuzzer exits the process when it is done) ------------------------


def _atheris_child(argv: list[str]) -> None:
    """Body of the child process: instrument, set up libFuzzer with ``argv`` and fuzz until it exits."""
    import atheris

    with atheris.instrument_imports(include=["PIL", "triage"]):
        from PIL import Image

        Image.init()  # Import every format plugin now, inside the instrumentation block.
        import triage.core.quality  # noqa: F401
        import triage.inference.decode

        triage.inference.decode._heif_available()  # Register HEIF now, not in the middle of a run.

    def test_one_input(data: bytes) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_one(data)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        out = atheris.Mutate(data, max_size)
        return fix_png_crcs(out) if seed % 2 else out

    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def run_atheris(
    seeds: dict[str, bytes], runs: int, seed: int, timeout_s: float, rss_limit_mb: int, findings_dir: Path
) -> FuzzReport:
    """Run libFuzzer (via atheris) for ``runs`` inputs in a child process and summarise its output."""
    report = FuzzReport(engine="atheris", runs=runs, seed=seed, seeds=len(seeds))
    findings_dir.mkdir(parents=True, exist_ok=True)
    before = set(findings_dir.iterdir())
    with tempfile.TemporaryDirectory(prefix="fuzz-corpus-") as work:
        # libFuzzer adds the inputs it finds interesting to its first corpus folder: a scratch copy, not ours.
        for name, data in seeds.items():
            (Path(work) / name).write_bytes(data)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--atheris-child",
            work,
            f"-runs={runs}",
            f"-seed={seed}",
            f"-timeout={int(math.ceil(timeout_s))}",
            f"-rss_limit_mb={rss_limit_mb}",
            f"-max_len={MAX_LEN}",
            f"-artifact_prefix={findings_dir}/",
            "-print_final_stats=1",
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
        report.elapsed_s = round(time.perf_counter() - start, 2)
    log = proc.stdout + proc.stderr
    done = re.search(r"Done (\d+) runs", log)
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    report.outcomes = {"executed": int(executed.group(1)) if executed else int(done.group(1)) if done else 0}
    cov = re.findall(r"\bcov: (\d+) ft: (\d+)", log)
    if cov:
        report.outcomes |= {"coverage_edges": int(cov[-1][0]), "features": int(cov[-1][1])}
    for stat in ("average_exec_per_sec", "peak_rss_mb"):
        if found := re.search(rf"stat::{stat}:\s*(\d+)", log):
            report.outcomes[stat] = int(found.group(1))
    if found := re.search(r"stat::slowest_unit_time_sec:\s*(\d+)", log):
        report.slowest_s = float(found.group(1))  # libFuzzer reports whole seconds
    for path in sorted(set(findings_dir.iterdir()) - before):
        report.findings.append({"kind": path.name.split("-", 1)[0], "input": str(path)})
    if proc.returncode != 0 and not report.findings:
        report.findings.append({"kind": f"exit code {proc.returncode}", "detail": log[-2000:]})
    if report.findings:
        sys.stderr.write(log[-6000:])
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, fuzz, write the JSON summary; exit code 1 when anything was found."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--atheris-child"]:
        _atheris_child([sys.argv[0], *argv[1:]])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20000, help="inputs to try, seeds included (default 20000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take (default 10)")
    p.add_argument("--rss-limit-mb", type=int, default=2048, help="atheris only: memory limit (default 2048)")
    p.add_argument("--findings", type=Path, default=DEFAULT_FINDINGS)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "builtin"
    seeds = corpus_seeds()
    if engine == "atheris":
        report = run_atheris(seeds, args.runs, args.seed, args.timeout, args.rss_limit_mb, args.findings)
    else:
        report = run_builtin(list(seeds.values()), args.runs, args.seed, args.timeout, args.findings)

    import PIL

    summary = asdict(report) | {
        "target": "triage.inference.decode.decode_upload + triage.core.quality.assess_quality",
        "pillow": PIL.__version__,
        "python": sys.version.split()[0],
        "command": "python bench/fuzz_decode.py " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
