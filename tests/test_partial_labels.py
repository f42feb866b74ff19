"""Partial labels: candidate crops of multi-outcome photos, and the candidate-set loss they train with."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from helpers import load_script
from PIL import Image
from test_lesions import skin_with_spots

from triage.core.preprocess import CANONICAL_SIZE
from triage.data.crops import build_crops, candidate_outcomes, kinds_for, read_crop_rows
from triage.training.dataset import CachedImages, load_splits
from triage.training.partial import CandidateSetLoss, candidate_masks, candidate_set_loss, training_crops

# -- which photos give candidate crops -------------------------------------------------------------------


def test_candidate_outcomes_of_multi_outcome_spot_labels():
    # Pustules beside cysts: a spot is one or the other.
    assert candidate_outcomes("roboflow_acne", ["Crystanlline", "Papular", "Purulent"]) == (
        "pustule",
        "refer-to-doctor",
    )
    assert candidate_outcomes("roboflow_acne", ["Blackhead", "Whitehead"]) == ("milia-like", "other")
    # One outcome (Papular has no target): an ordinary crop-eligible photo, no candidates.
    assert candidate_outcomes("roboflow_acne", ["Papular", "Purulent"]) == ()
    # Dermoscopic labels do not describe spots in a wider photo; unknown sources have no label rules.
    assert candidate_outcomes("ham10000", ["nv", "mel"]) == ()
    assert candidate_outcomes("my_clinic", ["pustule", "milia-like"]) == ()
    # A set of every outcome teaches nothing (-log of a sum of all probabilities is 0).
    assert candidate_outcomes("roboflow_acne", ["Blackhead", "Whitehead", "Purulent", "Cystic"]) == ()


def test_kinds_for_a_candidate_set_search_every_outcome_s_spots():
    assert kinds_for(["milia-like"]) == ("bright",)
    assert set(kinds_for(["milia-like", "other"])) == {"bright", "dark", "red"}


# -- the build -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def candidate_build(tmp_path_factory):
    """A crop build of four roboflow-like photos: single-outcome and pustule + cyst, in train and test."""
    root = tmp_path_factory.mktemp("partial")
    spots = [(80, 90, 7, (236, 228, 200)), (220, 140, 9, (200, 70, 70)), (150, 60, 6, (240, 232, 210))]
    photos = [
        ("train", "pustule", ["Purulent"]),
        ("train", "refer-to-doctor", ["Cystic", "Purulent"]),
        ("test", "refer-to-doctor", ["Cystic", "Purulent"]),
        ("test", "pustule", ["Purulent"]),
    ]
    parents = []
    for i, (split, label, labels) in enumerate(photos):
        path = root / f"{i}.png"
        Image.fromarray(skin_with_spots(spots, seed=i)).save(path)
        parents.append(
            {
                "path": path,
                "crop_bottom": 0.0,
                "cache_row": i,
                "split": split,
                "label": label,
                "source": "roboflow_acne",
                "source_labels": labels,
                "group": f"g{i}",
                "fitzpatrick": -1,
            }
        )
    counts = build_crops(parents, root, workers=1)
    with open(root / "crops.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return root, counts, rows


def test_candidate_crops_come_from_training_photos_only_after_every_ordinary_crop(candidate_build):
    root, counts, rows = candidate_build
    cand = [r for r in rows if r["candidates"]]
    ordinary = [r for r in rows if not r["candidates"]]
    assert cand and ordinary, "the drawn spots must be found"
    assert {r["cache_row"] for r in cand} == {"1"}  # the train photo; the test one gives none
    assert {r["candidates"] for r in cand} == {"pustule;refer-to-doctor"}
    assert {r["label"] for r in cand} == {"refer-to-doctor"}  # the photo's own, most cautious label
    assert {r["cache_row"] for r in ordinary} == {"0", "3"}
    # Ordinary crops keep the rows they had before candidate crops existed: candidates come last.
    assert max(int(r["crop_row"]) for r in ordinary) < min(int(r["crop_row"]) for r in cand)
    assert counts["crops"] == len(ordinary) and counts["candidate_crops"] == len(cand)
    assert counts["candidate_photos"] == 1 and counts["eligible_photos"] == 2
    squares = np.load(root / f"crops_{CANONICAL_SIZE}.npy", mmap_mode="r")
    assert len(squares) == len(rows)
    # Every reader but partial-label training sees the ordinary crops alone.
    assert read_crop_rows(root) == [r | {"candidates": ""} for r in ordinary]
    assert len(read_crop_rows(root, candidates=True)) == len(rows)


def test_training_splits_hold_candidate_crops_only_when_asked(candidate_build, tmp_path):
    root, _, rows = candidate_build
    # A photo cache and manifest beside the crops (the rows' photos themselves are not needed here).
    np.save(tmp_path / f"cache_{CANONICAL_SIZE}.npy", np.zeros((4, CANONICAL_SIZE, CANONICAL_SIZE, 3), np.uint8))
    for name in ("crops.csv", f"crops_{CANONICAL_SIZE}.npy"):
        (tmp_path / name).write_bytes((root / name).read_bytes())
    (tmp_path / "fingerprint.txt").write_text("x\n")
    with open(tmp_path / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(
            fh, fieldnames=["cache_row", "split", "label", "source", "source_labels", "group", "fitzpatrick"]
        )
        w.writeheader()
        for i, (split, label) in enumerate(
            [("train", "pustule"), ("train", "refer-to-doctor"), ("test", "refer-to-doctor"), ("test", "pustule")]
        ):
            w.writerow(
                {
                    "cache_row": i,
                    "split": split,
                    "label": label,
                    "source": "roboflow_acne",
                    "source_labels": "x",
                    "group": f"g{i}",
                    "fitzpatrick": -1,
                }
            )
    _, plain, _ = load_splits(tmp_path)
    _, partial, _ = load_splits(tmp_path, candidates=True)
    n_cand = sum(bool(r["candidates"]) for r in rows)
    assert len(partial["train_crops"].rows) == len(plain["train_crops"].rows) + n_cand
    assert set(plain["train_crops"].candidates) == {""}
    # Only a partial-label run draws them (its baselines, trained on the same splits, do not).
    assert training_crops(partial["train_crops"], True) is partial["train_crops"]
    assert training_crops(partial["train_crops"], False).rows.tolist() == plain["train_crops"].rows.tolist()
    # The close-up test set is the same either way, and so is a held-out source's close-up set.
    assert partial["test_crops"].rows.tolist() == plain["test_crops"].rows.tolist()
    _, held_plain, _ = load_splits(tmp_path, holdout_source="roboflow_acne")
    _, held_partial, _ = load_splits(tmp_path, holdout_source="roboflow_acne", candidates=True)
    assert held_partial["holdout_crops"].rows.tolist() == held_plain["holdout_crops"].rows.tolist()
    assert len(held_plain["holdout_crops"].rows) == len(plain["train_crops"].rows) + len(plain["test_crops"].rows)


# -- the loss --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.05, 0.2])
def test_candidate_set_loss_of_one_class_sets_is_cross_entropy(smoothing):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=g)
    y = torch.randint(0, 7, (16,), generator=g)
    want = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, y)
    got = candidate_set_loss(logits, torch.nn.functional.one_hot(y, 7).float(), smoothing)
    assert torch.allclose(got, want, atol=1e-6)
    # The module routes class indices to cross-entropy and sets to the set loss: the same number.
    loss = CandidateSetLoss(smoothing)
    assert torch.allclose(loss(logits, y), loss(logits, torch.nn.functional.one_hot(y, 7).float()), atol=1e-6)


def test_candidate_set_loss_rewards_the_set_not_a_member_of_it():
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])

    def loss_at(*p: float) -> torch.Tensor:
        return candidate_set_loss(torch.log(torch.tensor([p])), target)

    # Any split of the same probability inside the set costs the same; less on the set costs more.
    assert torch.allclose(loss_at(0.6, 0.2, 0.1, 0.1), loss_at(0.2, 0.6, 0.1, 0.1), atol=1e-6)
    assert torch.allclose(loss_at(0.6, 0.2, 0.1, 0.1), loss_at(0.4, 0.4, 0.1, 0.1), atol=1e-6)
    assert loss_at(0.3, 0.3, 0.2, 0.2) > loss_at(0.4, 0.4, 0.1, 0.1)
    # Gradient steps move probability into the set, leaving the split inside it free.
    logits = torch.zeros(1, 4, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(50):
        opt.zero_grad()
        candidate_set_loss(logits, target).backward()
        opt.step()
    p = logits.softmax(1)[0]
    assert p[:2].sum() > 0.95 and torch.isclose(p[0], p[1])


def test_candidate_masks_cover_every_class_of_each_candidate_outcome():
    # Diagnosis classes: the four catch-alls, then two pustule and one refer diagnosis.
    class_outcomes = [0, 1, 2, 3, 1, 1, 3]
    masks = candidate_masks(["pustule;refer-to-doctor", "milia-like;other"], class_outcomes)
    assert masks.tolist() == [
        [False, True, False, True, True, True, True],
        [True, False, True, False, False, False, False],
    ]
    assert candidate_masks([], class_outcomes).shape == (0, 7)
    for bad in ("", "pimple;pustule"):
        with pytest.raises(ValueError):
            candidate_masks([bad], class_outcomes)


def test_dataset_gives_candidate_crops_their_set_and_everything_else_one_class():
    cache = np.zeros((2, 8, 8, 3), np.uint8)
    crops = np.full((3, 8, 8, 3), 255, np.uint8)
    from triage.training.dataset import Split

    split = Split(np.array([0, 1]), np.array([1, 3]), np.array(["s", "s"]), np.array([-1, -1]), np.array(["a", "b"]))
    mask = np.array([False, True, False, True])
    always_crop = (crops, [np.array([], int), np.array([2])], 1.0, lambda image: {"image": image})
    ds = CachedImages(
        cache, split, lambda image: {"image": image}, (0, 0, 0), (1, 1, 1), always_crop, set_targets=(4, {2: mask})
    )
    _, t0 = ds[0]
    _, t1 = ds[1]
    assert t0.tolist() == [0.0, 1.0, 0.0, 0.0]  # a photo without crops: its own class
    assert t1.tolist() == mask.astype(float).tolist()  # its candidate crop: the set
    plain = CachedImages(cache, split, lambda image: {"image": image}, (0, 0, 0), (1, 1, 1), always_crop)
    assert plain[1][1] == 3  # without set targets, class indices as before


# -- the experiment that uses them -----------------------------------------------------------------------


def test_partial_label_rows_differ_from_the_long_recipe_by_the_flag_alone():
    exp = load_script("bench/experiments.py")
    base, new = exp.EXPERIMENTS["long-mnv3s-224px-ema"]["set"], exp.EXPERIMENTS["partial-labels-mnv3s-224px-ema"]["set"]
    assert new == base | {"partial_labels": "true"}


# -- end to end: the real build and train.py ---------------------------------------------------------------


@pytest.fixture(scope="module")
def acne_build(tmp_path_factory, make_photo):
    """Synthetic photos of every outcome plus pustule + cyst photos of the acne source, through the real build."""
    from test_training import PER_OUTCOME, TINT, _textured

    from triage.core.outcomes import OUTCOMES
    from triage.data.build import build
    from triage.data.sources import Record

    root = tmp_path_factory.mktemp("acne")
    records = []
    for k, outcome in enumerate(OUTCOMES):
        for j in range(PER_OUTCOME):
            i = k * PER_OUTCOME + j
            path = root / f"{i:02d}.png"
            _textured(make_photo(7000 + i, (128, 128)), i, TINT[outcome]).save(path)
            records.append(Record(path=path, source=f"src{i % 2}", labels=[outcome], outcome=outcome))
    spots = [(60, 70, 6, (236, 228, 200)), (170, 120, 8, (200, 70, 70)), (120, 180, 6, (240, 232, 210))]
    for j in range(12):
        path = root / f"acne{j:02d}.png"
        Image.fromarray(skin_with_spots(spots, size=(240, 240), seed=100 + j)).save(path)
        records.append(
            Record(path=path, source="roboflow_acne", labels=["Cystic", "Purulent"], outcome="refer-to-doctor")
        )
    build(records, root / "proc", seed=0, workers=1)
    return root / "proc"


def test_train_py_with_partial_labels_trains_on_the_candidate_crops(acne_build, tmp_path):
    from test_training import TINY

    rows = read_crop_rows(acne_build, candidates=True)
    assert any(r["candidates"] for r in rows), "the acne photos in the train split must give candidate crops"
    train_main = load_script("train.py").main
    flags = ["--data", str(acne_build), "--out", str(tmp_path), *TINY, "--lesion-crop-p", "0.5"]
    assert train_main([*flags, "--name", "partial", "--partial-labels", "true", "--diagnosis-labels", "true"]) == 0
    metrics = json.loads((tmp_path / "partial" / "metrics.json").read_text())
    assert metrics["model"]["test"]["n"] > 0
    cfg = yaml.safe_load((tmp_path / "partial" / "config.yaml").read_text())
    assert cfg["partial_labels"] is True
    n_cand = sum(bool(r["candidates"]) for r in rows)
    assert f"partial labels: {n_cand} candidate crops" in (tmp_path / "partial" / "train.log").read_text()


def test_partial_labels_on_a_build_without_candidate_crops_fail_before_training(acne_build, tmp_path):
    from test_training import TINY

    bare = tmp_path / "bare"
    shutil.copytree(acne_build, bare)
    ordinary = read_crop_rows(bare)
    with open(bare / "crops.csv", "w", newline="") as fh:  # the build as it was before candidate crops existed
        w = csv.DictWriter(fh, fieldnames=[k for k in ordinary[0] if k != "candidates"])
        w.writeheader()
        w.writerows([{k: v for k, v in r.items() if k != "candidates"} for r in ordinary])
    train_main = load_script("train.py").main
    with pytest.raises(ValueError, match="no candidate crops"):
        train_main(
            ["--data", str(bare), "--out", str(tmp_path), *TINY, "--name", "p", "--partial-labels", "true"]
            + ["--lesion-crop-p", "0.5"]
        )


def test_partial_labels_need_crops_to_be_drawn(acne_build, tmp_path):
    from test_training import TINY

    train_main = load_script("train.py").main
    flags = ["--data", str(acne_build), "--out", str(tmp_path), *TINY, "--name", "p", "--partial-labels", "true"]
    with pytest.raises(ValueError, match="lesion_crop_p > 0"):
        train_main([*flags, "--lesion-crop-p", "0"])


def test_a_close_up_manifest_lists_ordinary_crops_only(acne_build, tmp_path):
    from triage.data.sources import write_split_manifest

    n = write_split_manifest(acne_build, "train", tmp_path / "train_closeups.csv", closeups=True)
    assert n == sum(r["split"] == "train" for r in read_crop_rows(acne_build)) > 0
