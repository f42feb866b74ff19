"""Bring your own data: the documented worked example, the ImageFolder route and the registry recipe.

``test_worked_example_runs_end_to_end`` runs the shell block marked ``<!-- worked-example -->`` in
docs/BRING_YOUR_OWN_DATA.md as written (tiny dataset -> build -> train -> split manifest -> evaluate), so the
documentation cannot drift from what works.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import load_script

from triage.core.outcomes import OUTCOMES
from triage.data import labels as labels_mod
from triage.data import sources as sources_mod
from triage.data.build import build
from triage.data.build import main as data_main
from triage.data.sources import (
    REGISTRY,
    CountMismatch,
    Source,
    load_source,
    read_image_folder,
    read_labels_csv,
    read_manifest,
)
from triage.testing.synthetic import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "BRING_YOUR_OWN_DATA.md"
PER_OUTCOME, DUPLICATES = 12, 2


def worked_example() -> str:
    """The shell block after the ``<!-- worked-example -->`` marker."""
    m = re.search(r"<!-- worked-example -->\s*```bash\n(.*?)```", DOC.read_text(), re.S)
    assert m, "docs/BRING_YOUR_OWN_DATA.md lost its worked-example block"
    return m.group(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("byod") / "tiny", PER_OUTCOME, DUPLICATES)


def test_worked_example_runs_end_to_end(tmp_path):
    root = tmp_path / "tiny"
    env = dict(
        os.environ,
        TINY=str(root),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` = this venv's
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
    )
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", worked_example()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The build: every photo kept, the mirrored copies found, no group straddling splits.
    card = json.loads((root / "processed" / "data_card.json").read_text())
    n_images = len(OUTCOMES) * (PER_OUTCOME + DUPLICATES)
    assert card["images_kept"] == n_images
    assert card["duplicate_groups"] == len(OUTCOMES) * DUPLICATES
    assert card["groups_split_across_splits"] == 0
    for outcome, row in card["per_outcome_split"].items():
        assert all(row[s] > 0 for s in ("train", "val", "test")), outcome
    # The run folder.
    run = root / "runs" / "demo"
    for name in ("config.yaml", "model_summary.csv", "metrics.json", "model.pt", "model.pt.sha256"):
        assert (run / name).is_file(), name
    # The split manifest and the evaluation of the checkpoint on it.
    with open(root / "test_manifest.csv", newline="") as fh:
        test_rows = list(csv.DictReader(fh))
    assert len(test_rows) == sum(row["test"] for row in card["per_outcome_split"].values())
    assert not Path(test_rows[0]["path"]).is_absolute()  # portable, like models/test_manifest.csv
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["n"] == len(test_rows) and metrics["unreadable"] == 0
    assert set(metrics["by_source"]) == {"clinic_a", "clinic_b"}
    assert (root / "eval" / "report.md").read_text().startswith("# Evaluation of")
    summary = proc.stdout[proc.stdout.rindex("{") :]
    assert json.loads(summary[: summary.index("}") + 1])["n"] == len(test_rows)  # evaluate's summary
    # The model card and a sha256-checked copy of the model, regenerated for the researcher's own data.
    card_md = (root / "models" / "MODEL_CARD.md").read_text()
    assert card_md.startswith("# Model card") and "| clinic_a |" in card_md
    assert (root / "models" / "demo.pt.sha256").is_file()


def test_tiny_dataset_is_deterministic_and_both_formats_agree(tiny, tmp_path):
    again = write_tiny_dataset(tmp_path / "again", PER_OUTCOME, DUPLICATES)
    assert again.n_images == tiny.n_images == len(OUTCOMES) * (PER_OUTCOME + DUPLICATES)
    assert again.n_duplicates == len(OUTCOMES) * DUPLICATES
    with open(tiny.manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows[:: len(rows) // 6]:
        a, b = (tiny.root / r["path"]).read_bytes(), (again.root / r["path"]).read_bytes()
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest(), r["path"]
    # The ImageFolder tree holds exactly the manifest's files, under the manifest's outcomes.
    folder = read_image_folder(tiny.image_folder)
    assert sorted((str(r.path.relative_to(tiny.root)), r.outcome) for r in folder) == sorted(
        (r["path"], r["label"]) for r in rows
    )
    assert {r["fitzpatrick"] for r in rows} == {"", "1", "2", "3", "4", "5", "6"}


def test_image_folder_route_builds(tiny, tmp_path, capsys):
    out = tmp_path / "proc"
    argv = ["build", "--sources", "none", "--image-folder", str(tiny.image_folder), "--out", str(out)]
    assert data_main([*argv, "--workers", "1", "--no-cache"]) == 0
    card = json.loads((out / "data_card.json").read_text())
    assert card["images_kept"] == tiny.n_images
    assert card["duplicate_groups"] == tiny.n_duplicates
    with open(out / "manifest.csv", newline="") as fh:
        assert {r["source"] for r in csv.DictReader(fh)} == {"imagefolder"}


def test_registered_source_recipe(tiny, tmp_path, monkeypatch):
    """The three steps of 'Registering a source': folder + labels.csv, a registry entry, label-map rows."""
    folder = tmp_path / "bundle" / "my_clinic"
    vocabulary = {"milia-like": "Milium", "pustule": "Purulent", "other": "Seborrhoeic keratosis",
                  "refer-to-doctor": "Basal cell carcinoma"}  # fmt: skip
    with open(tiny.manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    folder.mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "labels", "fitzpatrick", "isic_id"])
        for i, r in enumerate(rows):
            extra = ";Acne" if i % 5 == 0 else ""  # a generic label, excluded: the other label decides
            w.writerow([str(tiny.root / r["path"]), vocabulary[r["label"]] + extra, r["fitzpatrick"], ""])
        w.writerow([str(tiny.root / rows[0]["path"]), "Acne", "", ""])  # only a generic label: no target
    label_map = tmp_path / "label_map.csv"
    label_map.write_text(
        labels_mod.LABEL_MAP_PATH.read_text()
        + "".join(f"my_clinic,{label},{outcome},\n" for outcome, label in vocabulary.items())
        + "my_clinic,Acne,exclude,generic label: not specific enough for a target\n"
    )
    rules = labels_mod.load_label_map(label_map)
    monkeypatch.setattr(sources_mod, "map_labels", lambda s, ls: labels_mod.map_labels(s, ls, rules))
    source = Source("my_clinic", "clinical", len(rows) + 1, "CC BY-NC 4.0", "generated", read_labels_csv)
    monkeypatch.setitem(REGISTRY, "my_clinic", source)

    records = load_source("my_clinic", tmp_path / "bundle")
    assert [r.outcome for r in records[:-1]] == [r["label"] for r in rows]
    assert records[-1].outcome is None and records[-1].exclude_reason  # dropped by the build as "no target"
    assert {r.fitzpatrick for r in records} == {-1, 1, 2, 3, 4, 5, 6}
    # The count check and the every-label-is-mapped rule.
    monkeypatch.setitem(REGISTRY, "my_clinic", Source("my_clinic", "clinical", len(rows), "x", "x", read_labels_csv))
    with pytest.raises(CountMismatch):
        load_source("my_clinic", tmp_path / "bundle")
    with open(folder / "labels.csv", "a", newline="") as fh:
        csv.writer(fh).writerow([str(tiny.root / rows[1]["path"]), "Comedone", "", ""])
    with pytest.raises(KeyError, match="Comedone"):
        load_source("my_clinic", tmp_path / "bundle", check_count=False)


def test_backbone_comparison_on_a_tiny_build(tiny, tmp_path):
    """bench/backbones.py: every backbone, one recipe, one CSV row each (smoke-sized: 1 epoch of 1 batch)."""
    build(read_manifest(tiny.manifest), tmp_path / "proc", seed=0, workers=1)
    bench = load_script("bench/backbones.py")
    results = tmp_path / "results" / "backbones.csv"
    argv = ["--data", str(tmp_path / "proc"), "--epochs", "1", "--max-batches", "1", "--batch-size", "8",
            "--image-size", "64", "--init-weights", "none", "--workers", "0", "--threads", "1",
            "--latency-repeats", "3", "--out", str(tmp_path / "runs"), "--results", str(results)]  # fmt: skip
    assert bench.main(argv) == 0
    with open(results, newline="") as fh:
        rows = {r["arch"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(bench.BACKBONES)  # every registered backbone, EfficientNet-Lite0 included
    for arch, r in rows.items():
        assert list(r) == bench.COLUMNS
        assert r["init"] == "random" and r["epochs"] == "1" and r["image_size"] == "64"
        assert 0 <= float(r["balanced_accuracy"]) <= 1 and 0 <= float(r["ece"]) <= 1
        assert float(r["model_size_mb"]) > 1 and float(r["latency_ms_median"]) > 0 and float(r["train_seconds"]) > 0
        assert int(r["test_n"]) > 0 and Path(r["run_dir"]).name == f"{arch}-e1"
        assert (Path(r["run_dir"]) / "model.pt").is_file()
    # The two backbones really differ (mobilenet_v2 is the bigger network).
    assert float(rows["mobilenet_v2"]["params_m"]) > float(rows["mobilenet_v3_small"]["params_m"])


def test_phone_photos_are_cached_as_serving_decodes_them(tiny, tmp_path):
    # A clinic's own photos carry what the bundled JPEGs never do: an EXIF orientation tag, transparency,
    # a palette. The build must decode them as serving does, or a model trains on sideways or black-backed
    # squares and is served upright, white-backed ones.
    import shutil

    import numpy as np
    from PIL import Image
    from test_lesions import skin_with_spots

    from triage.core.preprocess import CANONICAL_SIZE, canonical_square
    from triage.data.cache import open_crop_cache
    from triage.data.crops import read_crop_rows
    from triage.inference.decode import decode_path

    folder = tmp_path / "folder"
    shutil.copytree(tiny.image_folder, folder)
    spots = [(170, 50, 7, (236, 228, 200)), (220, 100, 6, (240, 232, 210)), (260, 60, 7, (236, 228, 200))]
    stored = skin_with_spots(spots, size=(300, 160), seed=3)
    stored[:, :120] = (40, 40, 40)  # a dark band on the stored left edge: the top once turned upright
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    turned = folder / "milia-like" / "phone-turned.jpg"
    Image.fromarray(stored).save(turned, quality=95, exif=exif)
    rgba = Image.fromarray(skin_with_spots(spots, size=(300, 160), seed=4)).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(300)[None, :] < 120, 0, 255).repeat(160, 0).astype(np.uint8)))
    see_through = folder / "milia-like" / "phone-alpha.png"
    rgba.save(see_through)
    palette = folder / "other" / "phone-palette.png"
    Image.fromarray(skin_with_spots(spots, size=(200, 200), seed=5)).convert("P").save(palette)

    out = tmp_path / "proc"
    assert data_main(["build", "--sources", "none", "--image-folder", str(folder), "--out", str(out)]) == 0
    cache = np.load(out / f"cache_{CANONICAL_SIZE}.npy", mmap_mode="r")
    with open(out / "manifest.csv", newline="") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    for photo in (turned, see_through, palette):
        served = decode_path(photo).image
        assert np.array_equal(cache[int(rows[photo.name]["cache_row"])], canonical_square(served)), photo.name
    upright = cache[int(rows[turned.name]["cache_row"])]
    assert upright[:10].mean() < 80 < upright[-10:].mean()  # the dark band is on top, as the person saw it
    assert cache[int(rows[see_through.name]["cache_row"])][:, :10].min() > 240  # transparency is white
    # Crop boxes are cut from the upright photo, as the close-up tools cut them.
    crops, squares = read_crop_rows(out), open_crop_cache(out)
    mine = [c for c in crops if c["cache_row"] == rows[turned.name]["cache_row"]]
    assert mine, "the turned photo's spots must give crops"
    for c in mine:
        box = tuple(int(v) for v in c["box"].split(","))
        assert np.array_equal(squares[int(c["crop_row"])], canonical_square(decode_path(turned).image.crop(box)))
