"""Lesion-centred crops: which photos may give them, and the crop cache the data build writes.

A crop inherits its photo's outcome only where the photo's label describes *each spot* in it (a milia photo,
a pustular-acne photo, a photo of one mole or one carcinoma). Labels about a whole area (eczema, rosacea,
psoriasis, viral rashes spread over a region) keep whole-photo training only. Dermoscopic sources are already
single-lesion close-ups and are not cropped. Refer-to-doctor lesions are cropped too, so that the model also
sees close-ups of spots a doctor must see and never learns "a single spot filling the frame means benign".

Outputs (beside the build's ``manifest.csv``):

* ``crops_<size>.npy`` - canonical squares of every crop;
* ``crops.csv`` - one row per crop: the parent's cache row, split, outcome, source, group, skin type, the
  spot (centre, radius, kind) and scale it was cut at, and its ``candidates``.

**Candidate crops.** A training photo whose spot labels point at several outcomes (pustules beside cysts,
whiteheads beside blackheads) gives no ordinary crops: a crop around one of its spots shows one of those
outcomes, but which is unknown. It gives *candidate crops* instead, labelled with the set of outcomes
(``candidates``, e.g. ``pustule;refer-to-doctor``), for training with a candidate-set loss
(``triage.training.partial``, ``TrainConfig.partial_labels``). They are cut for the train split only, so the
close-up validation and test sets stay single-label, and are written after every ordinary crop, so ordinary
crops keep their rows. :func:`read_crop_rows` leaves them out unless asked; their ``label`` is the photo's own
(its most cautious outcome).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from triage.core.outcomes import OUTCOMES
from triage.core.pixels import upright_rgb
from triage.core.preprocess import CANONICAL_SIZE, canonical_square, crop_bottom
from triage.data.labels import EXCLUDE, load_label_map
from triage.data.lesions import KINDS_FOR_OUTCOME, find_spots, spot_crops

#: Sources whose photos are dermoscopic: one lesion already fills the frame.
DERMOSCOPIC = {"ham10000", "isic9"}

#: Labels whose every spot carries the label (beyond milia-like and pustule labels, which all do).
SPOT_LABELS: dict[str, set[str]] = {
    "ascid": {"Keratosis", "Carcinoma"},
    "fitzpatrick17k": {
        "seborrheic keratosis",
        "keloid",
        "dermatofibroma",
        "melanoma",
        "malignant melanoma",
        "superficial spreading melanoma ssm",
        "basal cell carcinoma",
        "basal cell carcinoma morpheiform",
        "squamous cell carcinoma",
        "kaposi sarcoma",
        "pyogenic granuloma",
        "actinic keratosis",
        "prurigo nodularis",
    },
    "roboflow_acne": {
        "Blackhead",
        "Flat_wart",
        "Keloid",
        "Cystic",
        "Sebo-crystan-conglo",
        "Crystanlline",
        "Conglobata",
    },
    "msld_v2": {"Chickenpox", "Cowpox", "HFMD"},  # each vesicle is the disease's lesion
}

#: DermNet topics (by words in their names) that show discrete lesions rather than a whole area.
DERMNET_SPOT_WORDS = (
    "naevus",
    "nevus",
    "angioma",
    "venous lake",
    "lentigo",
    "dermatofibroma",
    "cyst",
    "keloid",
    "sebaceous hyperplasia",
    "keratosis pilaris",
    "dermatosis papulosa nigra",
    "melanoma",
    "carcinoma",
    "keratoacanthoma",
    "actinic keratosis",
    "molluscum",
    "herpes simplex",
    "boil",
    "cutaneous horn",
    "kaposi",
    "pyogenic granuloma",
    "pilomatricoma",
    "angiofibroma",
    "mastocytoma",
    "glomus",
    "orf",
    "wart",
)
#: Words that make a DermNet topic a whole-area one even if a spot word matches (e.g. "naevus flammeus").
DERMNET_AREA_WORDS = ("flammeus", "syndrome", "of ota", "anaemicus", "depigmentosus", "epidermal", "congenital")


def label_describes_spots(source: str, label: str, outcome: str) -> bool:
    """Whether each spot in a photo with this source label carries the label."""
    if source in DERMOSCOPIC:
        return False
    if outcome in ("milia-like", "pustule"):
        return True
    if source == "dermnet_nz":
        low = label.lower()
        return any(w in low for w in DERMNET_SPOT_WORDS) and not any(w in low for w in DERMNET_AREA_WORDS)
    return label in SPOT_LABELS.get(source, set())


def crop_eligible(source: str, labels: list[str], outcome: str, rules: dict | None = None) -> bool:
    """A photo gives crops when every label that has a target maps to its outcome and describes spots.

    A multi-label photo whose labels point at different outcomes (say pustules and blackheads) gives none:
    a crop around one of its spots could be of either. Photos of an unregistered source (labelled with
    outcomes directly) give crops when they are milia-like or pustule.
    """
    rules = load_label_map() if rules is None else rules
    if not any((source, lab) in rules for lab in labels):
        # A manifest or ImageFolder source (a clinic's own photos): its labels are outcomes, and only the
        # spot-type outcomes can be trusted to describe each spot.
        return outcome in ("milia-like", "pustule")
    targeted = [lab for lab in labels if (rule := rules.get((source, lab))) is not None and rule.outcome != EXCLUDE]
    if not targeted:
        return False
    return all(
        rules[(source, lab)].outcome == outcome and label_describes_spots(source, lab, outcome) for lab in targeted
    )


def candidate_outcomes(source: str, labels: list[str], rules: dict | None = None) -> tuple[str, ...]:
    """The outcomes a spot of a multi-label photo may show, when it gives candidate crops; else ``()``.

    That is when its targeted labels point at two or three outcomes (a set of all four says nothing) and every
    one of them describes spots (:func:`label_describes_spots`). The outcomes come in
    :data:`~triage.core.outcomes.OUTCOMES` order.
    """
    rules = load_label_map() if rules is None else rules
    targeted = {lab: rule.outcome for lab in labels if (rule := rules.get((source, lab))) and rule.outcome != EXCLUDE}
    outcomes = set(targeted.values())
    if len(outcomes) < 2 or not all(label_describes_spots(source, lab, o) for lab, o in targeted.items()):
        return ()
    if outcomes == set(OUTCOMES):  # a set of every outcome: -log sum p = 0, nothing to learn
        return ()
    return tuple(o for o in OUTCOMES if o in outcomes)


def kinds_for(outcomes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The spot kinds to search for a photo that may show any of ``outcomes`` (their union, in order)."""
    return tuple(dict.fromkeys(k for o in outcomes for k in KINDS_FOR_OUTCOME[o]))


def crops_for_image(
    path: str, crop_share: float, outcome: str, max_spots: int = 3, candidates: str = ""
) -> list[tuple[dict, np.ndarray]]:
    """Find spots in one photo and cut canonical-square crops around them; never raises for bad files.

    ``candidates`` (``;``-joined outcomes): search the spot kinds of all of them instead of ``outcome``'s.
    """
    try:
        with Image.open(path) as im:
            image = crop_bottom(upright_rgb(im), crop_share)
    except (OSError, ValueError, Image.DecompressionBombError):
        return []
    kinds = kinds_for(candidates.split(";")) if candidates else KINDS_FOR_OUTCOME[outcome]
    spots = find_spots(np.asarray(image), kinds=kinds, max_spots=max_spots)
    out = []
    for spot, k, box in spot_crops(image, spots):
        info = {
            "x": round(spot.x, 1),
            "y": round(spot.y, 1),
            "radius": round(spot.radius, 1),
            "kind": spot.kind,
            "scale": k,
            "box": ",".join(map(str, box)),
            "candidates": candidates,
        }
        out.append((info, canonical_square(image.crop(box), CANONICAL_SIZE)))
    return out


def _job(args: tuple) -> list[tuple[dict, np.ndarray]]:
    return crops_for_image(*args)


CROP_COLUMNS = [
    "crop_row",
    "cache_row",
    "split",
    "label",
    "source",
    "source_labels",
    "group",
    "fitzpatrick",
    "x",
    "y",
    "radius",
    "kind",
    "scale",
    "box",
    "candidates",
]


def build_crops(parents: list[dict], out: Path, workers: int = 2) -> dict:
    """Cut crops for the eligible photos and write ``crops.csv`` and ``crops_<size>.npy`` into ``out``.

    Args:
        parents: one dict per kept photo with ``path``, ``crop_bottom``, ``cache_row``, ``split``, ``label``,
            ``source``, ``source_labels`` (list), ``group`` and ``fitzpatrick``.
        out: the build folder.
        workers: processes for detection.

    Returns:
        counts for the data card: photos cropped and crops per outcome, source and split.
    """
    rules = load_label_map()
    chosen = [p for p in parents if crop_eligible(p["source"], p["source_labels"], p["label"], rules)]
    n_ordinary = len(chosen)
    # A photo with candidates points at two or more outcomes, so it is never among the eligible ones above.
    sets = {id(p): c for p in parents if p["split"] == "train" and (c := _candidates(p, rules))}
    chosen += [p for p in parents if id(p) in sets]
    jobs = [(str(p["path"]), p["crop_bottom"], p["label"], 3, sets.get(id(p), "")) for p in chosen]
    if workers <= 1:
        results = [_job(j) for j in tqdm(jobs, desc="crops", unit="img")]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_job, jobs, chunksize=16), total=len(jobs), desc="crops", unit="img"))
    n = sum(len(r) for r in results)
    arr = np.lib.format.open_memmap(
        crop_cache_path(out, CANONICAL_SIZE), mode="w+", dtype=np.uint8, shape=(n, CANONICAL_SIZE, CANONICAL_SIZE, 3)
    )
    counts: dict = defaultdict(lambda: defaultdict(Counter))
    photos = Counter()
    row = n_candidate = candidate_photos = 0
    with open(out / "crops.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CROP_COLUMNS)
        w.writeheader()
        for i, (p, res) in enumerate(zip(chosen, results, strict=True)):
            ordinary = i < n_ordinary  # candidate crops are counted apart: the close-up counts stay as they were
            n_candidate += 0 if ordinary else len(res)
            candidate_photos += int(bool(res) and not ordinary)
            if res and ordinary:
                photos[p["split"]] += 1
            for info, square in res:
                arr[row] = square
                w.writerow(
                    {
                        "crop_row": row,
                        "cache_row": p["cache_row"],
                        "split": p["split"],
                        "label": p["label"],
                        "source": p["source"],
                        "source_labels": ";".join(p["source_labels"]),
                        "group": p["group"],
                        "fitzpatrick": p["fitzpatrick"],
                        **info,
                    }
                )
                if ordinary:
                    counts[p["label"]][p["source"]][p["split"]] += 1
                row += 1
    arr.flush()
    del arr
    return {
        "eligible_photos": n_ordinary,
        "photos_with_crops": dict(photos),
        "crops": n - n_candidate,
        "candidate_photos": candidate_photos,
        "candidate_crops": n_candidate,
        "per_outcome_source_split": {o: {s: dict(c) for s, c in v.items()} for o, v in counts.items()},
    }


def _candidates(photo: dict, rules: dict) -> str:
    """A parent photo's candidate outcomes, ``;``-joined (empty when it gives no candidate crops)."""
    return ";".join(candidate_outcomes(photo["source"], photo["source_labels"], rules))


def crop_cache_path(data_dir: Path, size: int = CANONICAL_SIZE) -> Path:
    """Where a build keeps its crops' canonical squares of side ``size``."""
    return Path(data_dir) / f"crops_{size}.npy"


def read_crop_rows(data_dir: Path, candidates: bool = False) -> list[dict]:
    """The rows of ``crops.csv`` (empty for a build without crops).

    Candidate crops (multi-outcome training photos, see the module docstring) only with ``candidates``; a build
    made before they existed has no ``candidates`` column, and every row reads as an ordinary crop.
    """
    csv_path = Path(data_dir) / "crops.csv"
    if not csv_path.exists():
        return []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["candidates"] = r.get("candidates") or ""
    return rows if candidates else [r for r in rows if not r["candidates"]]
