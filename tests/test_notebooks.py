"""The research notebooks: committed without outputs, and each runs headless on a tiny generated build.

The notebooks read their inputs from ``TRIAGE_NB_DATA`` / ``TRIAGE_NB_CHECKPOINT`` / ``TRIAGE_NB_MANIFEST``;
here those point at a generated build, a random-weight checkpoint and the build's test split.
"""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import pytest

from triage.core.outcomes import CANT_ASSESS, OUTCOMES
from triage.data.build import build
from triage.data.sources import read_manifest
from triage.research import analysis as A
from triage.testing.synthetic import write_tiny_checkpoint, write_tiny_dataset

nbformat = pytest.importorskip("nbformat")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny build (with duplicate groups), a random-weight checkpoint, the build's test split and verdicts."""
    root = tmp_path_factory.mktemp("nb")
    data = write_tiny_dataset(root / "tiny", per_outcome=12, duplicates=2)
    build(read_manifest(data.manifest), root / "processed", seed=0, workers=1)
    manifest = root / "test_manifest.csv"
    assert A.write_split_manifest(root / "processed", "test", manifest) > 0
    return {
        "data": root / "processed",
        "checkpoint": write_tiny_checkpoint(root / "m.pt"),
        "manifest": manifest,
        "verified": _write_verdicts(manifest, root / "verified_closeups.csv"),
    }


def _write_verdicts(manifest: Path, out: Path) -> Path:
    """Close-up verdicts on the test photos' top-left corners: every third row "no", the others "yes"."""
    rows = A.read_rows(manifest)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], "box", "verdict"])
        w.writeheader()
        w.writerows(dict(r, box="0,0,64,64", verdict="no" if i % 3 == 0 else "yes") for i, r in enumerate(rows))
    return out


def test_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_data.ipynb", "02_errors.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path):
    """nbstripout's rule: no outputs, no execution counts, no per-run metadata in git."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs: run nbstripout"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
        assert not {"execution", "collapsed", "scrolled"} & set(cell.metadata), f"{path.name} cell {i} metadata"
    assert "widgets" not in nb.metadata


def test_notebook_paths_default_to_the_real_build(monkeypatch):
    for var, _ in A.NOTEBOOK_SETTINGS.values():
        monkeypatch.delenv(var, raising=False)
    paths = A.notebook_paths()
    assert paths == {
        "data": REPO / "data" / "processed",
        "checkpoint": REPO / "models" / "triage-mnv3s.pt",
        "manifest": REPO / "models" / "test_manifest.csv",
        "verified": REPO / "results" / "verified_closeups.csv",
    }
    monkeypatch.setenv("TRIAGE_NB_DATA", "/somewhere/else")
    assert A.notebook_paths()["data"] == Path("/somewhere/else")


def _execute(path: Path, tiny: dict[str, Path], monkeypatch) -> list[dict]:
    from nbclient import NotebookClient

    for key, (var, _) in A.NOTEBOOK_SETTINGS.items():
        monkeypatch.setenv(var, str(tiny[key]))  # the kernel inherits this process's environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _pngs(outputs: list[dict]) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]


def test_data_notebook_runs_headless(tiny, monkeypatch):
    outputs = _execute(REPO / "notebooks" / "01_data.ipynb", tiny, monkeypatch)
    pngs = _pngs(outputs)
    verified = A.read_rows(tiny["verified"])
    sheets = len({r["label"] for r in verified if r["verdict"] == "yes"})
    # table, skin types, examples, crops, duplicates, then one sheet of verified close-ups per outcome
    assert len(pngs) == 5 + sheets and sheets == len(OUTCOMES) and all(p.startswith(PNG) for p in pngs)
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "56 images kept of 56 read" in text
    assert "8 groups with more than one image (16 images)" in text
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs if "data" in o)
    assert "| outcome | n | yes | no | unsure | share yes |" in markdown


def test_errors_notebook_runs_headless(tiny, monkeypatch):
    outputs = _execute(REPO / "notebooks" / "02_errors.ipynb", tiny, monkeypatch)
    pngs = _pngs(outputs)
    assert len(pngs) == 5 and all(p.startswith(PNG) for p in pngs)  # confusion, mistakes, 2 groups, calibration
    n_test = len(read_manifest(tiny["manifest"]))
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert f"on test_manifest.csv: {n_test} photos (0 unreadable)" in text
    markdown = "".join(o["data"].get("text/markdown", "") for o in outputs if "data" in o)
    assert "balanced accuracy" in markdown and "clinic_a" in markdown


def test_error_analysis_functions(tiny):
    """The same calls as the notebook, checked for content rather than pictures."""
    from triage.inference.engine import Triage

    scored = A.score_manifest(Triage.load(tiny["checkpoint"], threads=1), tiny["manifest"])
    n = len(read_manifest(tiny["manifest"]))
    assert len(scored.y) == n and scored.probs.shape == (n, len(OUTCOMES)) and scored.unreadable == 0
    assert (abs(scored.probs.sum(1) - 1) < 1e-3).all()  # also for declined photos (the engine rounds to 4 places)
    table = A.decision_table(scored)
    assert table.row_labels == list(OUTCOMES) and table.col_labels[-1] == CANT_ASSESS
    assert table.counts.sum() == n
    mistakes = A.confident_mistakes(scored, k=50)
    top = scored.probs.max(1)
    assert all(scored.probs[i].argmax() != scored.y[i] for i in mistakes)
    assert [top[i] for i in mistakes] == sorted((top[i] for i in mistakes), reverse=True)
    by_type = A.group_metrics(scored, "fitzpatrick")
    assert sum(r["n"] for r in by_type) == n and {r["fitzpatrick"] for r in by_type} <= {
        "-1",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
    }
    rel = A.reliability(scored.probs, scored.y, bins=10)
    assert sum(rel["count"]) == n and 0 <= rel["ece"] <= 1
    assert json.dumps(by_type)  # plain data


def test_data_card_functions(tiny):
    b = A.load_build(tiny["data"])
    t = A.outcome_source_table(b.rows)
    assert t.row_labels == list(OUTCOMES) and t.col_labels == ["clinic_a", "clinic_b"]
    assert t.counts.sum() == len(b.rows) == 56
    f = A.fitzpatrick_table(b.rows)
    assert f.row_labels == ["train", "val", "test"] and f.col_labels == ["-1", "1", "2", "3", "4", "5", "6"]
    groups = A.duplicate_groups(b.rows)
    assert len(groups) == 8 and all(len(g) == 2 and len({r["split"] for r in g}) == 1 for g in groups)
    assert A.square_of(b, b.rows[0]).shape == (176, 176, 3)
