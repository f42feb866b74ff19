"""A short run of the decode-and-check fuzzer (``bench/fuzz_decode.py``), seeded from the corpus.

The long run is a bench (``python bench/fuzz_decode.py --runs 50000``); here a few thousand mutants with the
builtin engine and, where atheris is installed, a hundred with libFuzzer, so the harness itself cannot rot.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from helpers import load_script

REPO = Path(__file__).resolve().parents[1]


fuzz = load_script("bench/fuzz_decode.py")


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    return fuzz.corpus_seeds()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_builtin_fuzz_smoke_finds_nothing(seeds, tmp_path):
    report = fuzz.run_builtin(list(seeds.values()), runs=2000, seed=0, findings_dir=tmp_path / "findings")
    assert report.findings == [], report.findings
    assert sum(report.outcomes.values()) == 2000
    # Both sides of the path were exercised: photos that decode and get checked, and several kinds of refusal.
    assert report.outcomes.get("ok", 0) > 100, report.outcomes
    assert len(set(report.outcomes) - {"ok"}) >= 4, report.outcomes


def test_mutants_are_reproducible_and_png_crcs_repaired(seeds):
    import random

    a = [fuzz.mutate(seeds["metadata.png"], random.Random(7), list(seeds.values())) for _ in range(5)]
    b = [fuzz.mutate(seeds["metadata.png"], random.Random(7), list(seeds.values())) for _ in range(5)]
    assert a == b
    png = seeds["metadata.png"]
    assert fuzz.fix_png_crcs(png) == png  # valid CRCs are left alone
    broken = bytearray(png)
    broken[23] ^= 0x01  # the IHDR height's low byte (signature 8 + length 4 + type 4 + width 4 + 3): CRC now wrong
    fixed = fuzz.fix_png_crcs(bytes(broken))
    assert fixed[:29] == bytes(broken[:29]) and fixed[29:] != png[29:]
    assert int.from_bytes(fixed[29:33], "big") == zlib.crc32(fixed[12:29])


def test_harness_reports_an_escaping_exception(seeds, tmp_path):
    def target(data: bytes) -> str:
        if data.startswith(b"\x89PNG"):
            raise RuntimeError("escaped")
        return fuzz.check_one(data)

    png_seeds = [s for s in seeds.values() if s.startswith(b"\x89PNG")]
    report = fuzz.run_builtin(png_seeds[:2], runs=2, findings_dir=tmp_path, target=target)
    assert [f["kind"] for f in report.findings] == ["crash", "crash"]
    assert "RuntimeError: escaped" in report.findings[0]["detail"]
    assert Path(report.findings[0]["input"]).read_bytes() == png_seeds[0]


def test_atheris_smoke(tmp_path):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris not installed (pip install -e '.[dev]' on Linux x86-64); the builtin run covers this")
    out = tmp_path / "fuzz.json"
    cmd = [sys.executable, str(REPO / "bench" / "fuzz_decode.py"), "--engine", "atheris", "--runs", "100"]
    cmd += ["--out", str(out), "--findings", str(tmp_path / "findings")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["engine"] == "atheris" and summary["findings"] == []
    assert summary["outcomes"]["executed"] >= 100
