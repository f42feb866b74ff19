"""ONNX export: ``python -m triage export``, parity with PyTorch, and ``predict --backend onnx``.

One export of a tiny random-weight checkpoint (temperature 1.7 and OOD state, so both are exercised) is shared
by every test here; the exporter is the slow part (about 10-25 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")  # the torch.export-based exporter
ort = pytest.importorskip("onnxruntime")

from triage.__main__ import main as cli_main  # noqa: E402 - after the skips: needs the optional extra
from triage.inference.engine import ModelLoadError, Triage  # noqa: E402
from triage.inference.onnx_engine import OnnxTriage  # noqa: E402
from triage.release.export import META_KEY, parity_inputs  # noqa: E402
from triage.testing.synthetic import cast_and_grain, synthetic_photo, write_tiny_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Calibrated probabilities must agree to float32 rounding.
MAX_PROB_DIFF = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("onnx")
    ckpt = write_tiny_checkpoint(root / "tiny.pt", temperature=1.7)
    out = root / "tiny.onnx"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(["export", "--format", "onnx", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    summary = json.loads(buf.getvalue()[buf.getvalue().index("{") :])
    return {"root": root, "checkpoint": ckpt, "onnx": out, "summary": summary}


def test_export_writes_one_file_with_its_sha256_and_metadata(exported):
    import onnx

    out, summary = exported["onnx"], exported["summary"]
    assert summary["out"] == str(out) and summary["outputs"] == ["probabilities", "ood_score", "features"]
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith("tiny.onnx")) == [
        "tiny.onnx",
        "tiny.onnx.sha256",
    ]  # weights inside, no external-data file
    digest, name = (Path(str(out) + ".sha256")).read_text().split()
    assert name == "tiny.onnx" and digest == summary["sha256"]
    proto = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[META_KEY])
    ckpt_meta = Triage.load(exported["checkpoint"], threads=None).meta
    for key in ("arch", "classes", "image_size", "canonical_size", "mean", "std", "temperature", "refer_threshold",
                "abstain_threshold", "version", "data_fingerprint"):  # fmt: skip
        assert meta[key] == ckpt_meta[key], key
    assert meta["ood"] == {"threshold": ckpt_meta["ood"]["threshold"], "quantile": ckpt_meta["ood"]["quantile"]}
    # Batch is a named (dynamic) dimension; channels and size are fixed.
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]


def test_exported_probabilities_match_pytorch(exported):
    torch_engine = Triage.load(exported["checkpoint"], threads=2)
    onnx_engine = OnnxTriage.load(exported["onnx"], threads=2)
    x = parity_inputs(torch_engine, n=7, seed=3)
    for batch in (x[:1], x[:3], x):  # dynamic batch: 1, 3 and 7 photos through the same file
        p_ref, s_ref = torch_engine.model_outputs(batch)
        p_got, s_got = onnx_engine.model_outputs(batch)
        assert p_got.shape == p_ref.shape == (len(batch), 4)
        diff = float(np.abs(p_ref - p_got).max())
        assert diff < MAX_PROB_DIFF, diff
        assert np.allclose(s_got, s_ref, rtol=1e-4), (s_got, s_ref)
    print(f"max |p_torch - p_onnx| = {diff:.2e}")
    assert exported["summary"]["max_abs_diff"]["probabilities"] < MAX_PROB_DIFF
    # The temperature is inside the graph: without it the probabilities would be sharper.
    assert torch_engine.temperature == pytest.approx(1.7)


def test_diagnosis_level_head_exports_with_parity(tmp_path):
    # The shipped recipe trains on diagnosis-level labels: the graph must sum diagnoses to the four outcomes.
    from triage.release.export import export_onnx

    groups = [0, 1, 2, 3, 3, 3, 2, 1, 3, 0]
    ckpt = write_tiny_checkpoint(tmp_path / "dx.pt", temperature=1.3, diagnosis_outcomes=groups)
    summary = export_onnx(ckpt, tmp_path / "dx.onnx")
    assert summary["max_abs_diff"]["probabilities"] < MAX_PROB_DIFF
    x = parity_inputs(Triage.load(ckpt, threads=1), n=3, seed=5)
    probs, _ = OnnxTriage.load(tmp_path / "dx.onnx", threads=1).model_outputs(x)
    assert probs.shape == (3, 4) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_full_pipeline_agrees_between_backends(exported, tmp_path):
    torch_engine = Triage.load(exported["checkpoint"], threads=1)
    onnx_engine = OnnxTriage.load(exported["onnx"], threads=1)
    for seed in range(4):
        photo = cast_and_grain(synthetic_photo(np.random.default_rng(100 + seed), (200, 180)), seed)
        a, b = torch_engine.predict_image(photo), onnx_engine.predict_image(photo)
        assert a.outcome == b.outcome and a.reason_codes == b.reason_codes
        assert a.model_version == b.model_version
        if a.probabilities is not None:
            assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) <= 1e-4
            assert a.ood_score == pytest.approx(b.ood_score, rel=1e-3)


def test_predict_backend_onnx_imports_no_training_code(exported, tmp_path):
    photo = tmp_path / "spot.jpg"
    cast_and_grain(synthetic_photo(np.random.default_rng(7), (220, 200)), 7).save(photo, quality=92)
    code = (
        "import json, sys\n"
        "from triage.__main__ import main\n"
        f"rc = main(['predict', {str(photo)!r}, '--backend', 'onnx', '--model', {str(exported['onnx'])!r}, '--json'])\n"
        "banned = ['triage.training', 'triage.training.augment', 'triage.release.export', 'albumentations',"
        " 'onnx', 'onnxscript']\n"
        "print(json.dumps({'rc': rc, 'imported': [m for m in banned if m in sys.modules]}))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    *body, last = proc.stdout.strip().splitlines()  # predict's JSON list, then the status line
    rows, status = json.loads("\n".join(body)), json.loads(last)
    assert status == {"rc": 0, "imported": []}
    assert rows[0]["file"] == str(photo) and rows[0]["model_version"].startswith("tiny-random")
    expected = Triage.load(exported["checkpoint"], threads=1).predict_path(photo)
    assert rows[0]["outcome"] == expected.outcome


def test_onnx_engine_refuses_what_it_cannot_trust(exported, tmp_path, monkeypatch):
    altered = tmp_path / "altered.onnx"
    data = bytearray(exported["onnx"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    altered.write_bytes(bytes(data))
    Path(str(altered) + ".sha256").write_text(Path(str(exported["onnx"]) + ".sha256").read_text())
    with pytest.raises(ModelLoadError, match="does not match its recorded sha256"):
        OnnxTriage.load(altered)
    with pytest.raises(ModelLoadError, match="not found"):
        OnnxTriage.load(tmp_path / "missing.onnx")
    assert cli_main(["predict", "x.jpg", "--backend", "onnx", "--model", str(altered)]) == 2
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the optional extra were not installed
    with pytest.raises(ModelLoadError, match=r"pip install 'skin-triage\[onnx\]'"):
        OnnxTriage.load(exported["onnx"])


def test_onnx_latency_bench(exported, tmp_path):
    bench = load_script("bench/onnx_latency.py")
    out = tmp_path / "onnx_latency.json"
    argv = ["--checkpoint", str(exported["checkpoint"]), "--onnx", str(exported["onnx"]), "--repeats", "5"]
    assert bench.main([*argv, "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for side in ("pytorch", "onnxruntime"):
        assert 0 < result[side]["min_ms"] <= result[side]["median_ms"] <= result[side]["p90_ms"]
    assert result["threads"] == 1 and result["repeats"] == 5 and result["input"] == [1, 3, 64, 64]
    assert result["max_abs_diff_probabilities"] < MAX_PROB_DIFF
