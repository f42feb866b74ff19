"""Model integrity where it matters to a user: the shipped model's sha256 is recorded and right, and the app
(``serve.py``) refuses to start on a file that differs from its record by one byte.

``tests/test_model_integrity.py`` covers ``Triage.load`` itself (flipped byte, truncation, missing record,
pickles that are not plain weights, foreign checkpoints).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "triage-mnv3s.pt"


def test_shipped_model_sha256_is_recorded_and_matches():
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED.relative_to(REPO)} not built yet (it ships after training)")
    record = Path(str(SHIPPED) + ".sha256")
    assert record.is_file(), f"{record.name} missing: the shipped model must carry its sha256"
    match = re.fullmatch(r"([0-9a-f]{64})\s+(\S+)\s*", record.read_text())
    assert match, f"{record.name} is not '<sha256>  <file name>'"
    assert match.group(2) == SHIPPED.name
    assert match.group(1) == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()


def test_app_refuses_to_start_on_one_flipped_byte(tiny_model, tmp_path):
    model = tmp_path / "model.pt"
    shutil.copy(tiny_model, model)
    shutil.copy(str(tiny_model) + ".sha256", str(model) + ".sha256")
    data = bytearray(model.read_bytes())
    data[len(data) // 3] ^= 0x01
    model.write_bytes(bytes(data))
    # Port 9 (discard) is never bound: the app must stop before it gets that far.
    cmd = [sys.executable, str(REPO / "serve.py"), "--host", "127.0.0.1", "--port", "9", "--model", str(model)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert "Cannot start:" in proc.stderr and "does not match its recorded sha256" in proc.stderr
    assert "Traceback" not in proc.stderr
