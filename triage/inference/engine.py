"""The inference engine: any photo in, a cautious and explained outcome out.

Serving code: imports no training module. ``Triage.load`` rebuilds the
network from the checkpoint's own metadata after checking the file's
sha256; nothing falls back to random weights.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from triage.checkpoint import ModelLoadError, load_model
from triage.core.outcomes import CANT_ASSESS, OUTCOMES, most_cautious
from triage.core.policy import Thresholds, decide
from triage.core.preprocess import canonical_square, crop_bottom
from triage.core.quality import MESSAGES, QualityThresholds, assess_quality
from triage.core.red_flags import FlagError, apply_red_flags, check_answers
from triage.core.transforms import colour_of, eval_batch
from triage.core.urgency import urgency_for
from triage.inference.combine import TAP_RULE, combine_crop_probabilities
from triage.inference.decode import UploadError, decode_path, decode_upload
from triage.inference.tap import MIN_JUDGED_SIDE, Box, tap_boxes
from triage.models.backbones import classify_features, features
from triage.models.ood import ood_scores

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "triage-mnv3s.pt"

OOD_MESSAGE = (
    "This photo doesn't look like the close-ups of skin we can assess. "
    "Please take a clear close-up of the spot on your skin, or see a doctor if you are worried."
)
#: Said first, so a referral from low confidence is not read as "something was seen".
UNSURE_MESSAGE = (
    "The app was unsure: the photo's features were mixed, so the careful answer is to have a doctor look at it."
)
REFER_MESSAGE = "Some features of the photo resemble spots a doctor should look at, whether or not you plan a facial."
CROP_TOO_SMALL_MESSAGE = (
    "The area around the spot you tapped is too small in this photo to judge. "
    "Please take a closer photo of the spot, or tap nearer the middle of the photo."
)
TAP_NOT_SKIN_MESSAGE = "The place you tapped doesn't look like skin. Please tap on the spot itself."
TAP_LOW_RES_MESSAGE = (
    "This photo has too few pixels to zoom in on the spot you tapped, so the square around it was judged. "
    "A closer photo would let us look at the spot on its own."
)


@dataclass
class TriageResult:
    """The answer for one photo (JSON-serialisable via :meth:`to_dict`)."""

    outcome: str
    probabilities: dict[str, float] | None
    reasons: list[str] = field(default_factory=list)
    reason_codes: list[str] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)
    ood_score: float | None = None
    model_version: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    file: str | None = None
    #: The tapped point (fractions of width and height) and the framed area judged around it
    #: (``[left, top, right, bottom]`` fractions); both absent when the whole photo was judged.
    point: list[float] | None = None
    area: list[float] | None = None
    #: The red-flag questions as answered (``{"changed": "yes", ...}``, see :mod:`triage.core.red_flags`); absent
    #: when none were answered.
    answers: dict[str, str] | None = None

    @property
    def urgency(self) -> str:
        """How soon a doctor should see the spot (:func:`triage.core.urgency.urgency_for`).

        Worked out from the outcome, reason codes and answers each time, so it can never disagree with them.
        """
        return urgency_for(self.outcome, self.reason_codes, self.answers)

    def to_dict(self) -> dict:
        """Plain-data view for JSON: ``outcome``, ``urgency``, then the fields (``answers`` and such only if set)."""
        d = {"outcome": self.outcome, "urgency": self.urgency} | asdict(self)
        for key in ("file", "point", "area", "answers"):
            if d[key] is None:
                d.pop(key)
        return d


def decide_outcome(
    probs: np.ndarray | None,
    quality_reasons: list[str],
    ood_score: float | None,
    thresholds: Thresholds,
    ood_threshold: float | None,
) -> tuple[str, list[str]]:
    """The whole decision for one photo; pure.

    A photo that fails a quality check or looks like no skin the model knows
    gets ``cant-assess`` (shown as retake / see-a-doctor guidance). Otherwise
    refer-to-doctor when its calibrated probability passes the refer operating
    point or the model is unsure; else the most likely outcome.

    Returns:
        ``(outcome, reason_codes)``.
    """
    if quality_reasons:
        return CANT_ASSESS, list(quality_reasons)
    if ood_score is not None and ood_threshold is not None and ood_score > ood_threshold:
        return CANT_ASSESS, ["not_like_skin"]
    assert probs is not None
    idx = int(decide(probs[None], thresholds)[0])
    codes = []
    if OUTCOMES[idx] == "refer-to-doctor" and probs.argmax() != idx:
        codes.append("refer_threshold" if probs[idx] >= thresholds.refer_for(probs)[0] else "unsure")
    elif OUTCOMES[idx] == "refer-to-doctor" and probs.max() < thresholds.abstain:
        codes.append("unsure")
    return OUTCOMES[idx], codes


def most_cautious_index(results: list[TriageResult]) -> int:
    """Index of the photo whose answer leads (:data:`triage.core.outcomes.ANSWER_CAUTION`; the first of equals)."""
    if not results:
        raise ValueError("no results to combine")
    worst = most_cautious([r.outcome for r in results])
    return next(i for i, r in enumerate(results) if r.outcome == worst)


def _photo_name(result: TriageResult, index: int) -> str:
    return result.file or f"Photo {index + 1}"


def combine_reasons(results: list[TriageResult]) -> list[str]:
    """What a combined answer says about its photos: which one led, and which could not be assessed.

    The lead photo is named first; photos the gate declined are named after it, so a referral beside a blurry
    photo still asks for the doctor *and* says which photo to retake. No outcome code appears: people read it.
    """
    if len(results) < 2:
        return []
    idx = most_cautious_index(results)
    said = [f"{_photo_name(results[idx], idx)} led this answer: the most careful of the {len(results)} photos checked."]
    declined = [_photo_name(r, i) for i, r in enumerate(results) if r.outcome == CANT_ASSESS and i != idx]
    if declined:
        which = declined[0] if len(declined) == 1 else f"{', '.join(declined[:-1])} and {declined[-1]}"
        said.append(f"{which} could not be assessed: please retake {'it' if len(declined) == 1 else 'them'}.")
    return said


def combine_results(results: list[TriageResult]) -> TriageResult:
    """Several photos of one area: the most cautious answer leads, and the reasons say which photo drove it.

    "Most cautious" is :data:`triage.core.outcomes.ANSWER_CAUTION`: a referral always leads, whatever else the other
    photos gave, and the photos that could not be assessed are still named (:func:`combine_reasons`). The combined
    urgency is the most urgent of the photos', since an answer's urgency never falls as its caution rises
    (:data:`triage.core.urgency.OUTCOME_URGENCY`; tested for every pair).
    """
    idx = most_cautious_index(results)
    driver = results[idx]
    return TriageResult(
        outcome=driver.outcome,
        probabilities=driver.probabilities,
        reasons=combine_reasons(results) + driver.reasons,
        reason_codes=driver.reason_codes,
        quality=driver.quality,
        ood_score=driver.ood_score,
        model_version=driver.model_version,
        timings_ms={"total": round(sum(r.timings_ms.get("total", 0) for r in results), 2)},
        point=driver.point,
        area=driver.area,
    )


def with_answers(result: TriageResult, answers: dict[str, str] | None) -> TriageResult:
    """The result after the red-flag questions (:func:`triage.core.red_flags.apply_red_flags`): never less careful.

    Applied after the photo's decision and its safety gate, and after several photos are combined, so a
    combined answer still names the photos that could not be assessed. No answers: the result as it was.

    Raises:
        FlagError: an unknown question or answer.
    """
    answers = check_answers(answers)
    if not answers:
        return result
    outcome, reasons, codes = apply_red_flags(result.outcome, result.reasons, result.reason_codes, answers)
    return replace(result, outcome=outcome, reasons=reasons, reason_codes=codes, answers=answers)


class Triage:
    """A loaded model plus its decision policy and safety gate."""

    def __init__(self, model: torch.nn.Module, meta: dict, quality: QualityThresholds | None = None) -> None:
        self.model = model.eval()
        self.meta = meta
        other = meta.get("refer_threshold_other")  # absent in older checkpoints: one refer threshold
        self.thresholds = Thresholds(
            float(meta["refer_threshold"]), float(meta["abstain_threshold"]), None if other is None else float(other)
        )
        self.temperature = float(meta["temperature"])
        self.quality_thresholds = quality or QualityThresholds()
        self.version = str(meta.get("version", "unknown"))

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MODEL, verify: bool = True, threads: int | None = 2) -> Triage:
        """Load a checkpoint; refuse anything missing, tampered or not plain weights.

        Args:
            path: the ``.pt`` file; its sha256 must match ``<path>.sha256``.
            verify: check the recorded sha256 (disable only for a checkpoint you just made).
            threads: torch intra-op threads (``None`` leaves torch's default).

        Raises:
            ModelLoadError: with a sentence saying what is wrong.
        """
        if threads:
            torch.set_num_threads(threads)
        model, meta = load_model(path, verify, classes=OUTCOMES)
        return cls(model.to(memory_format=torch.channels_last), meta)

    # -- model -----------------------------------------------------------------
    def input_tensor(self, image: Image.Image) -> torch.Tensor:
        """The exact model input for an RGB image (canonical square, eval transform)."""
        return self._model_input([canonical_square(image, int(self.meta["canonical_size"]))])

    def _model_input(self, squares: list[np.ndarray]) -> torch.Tensor:
        """Canonical squares through the eval transform this checkpoint was evaluated with (colour constancy too)."""
        meta = self.meta
        return eval_batch(squares, int(meta["image_size"]), meta["mean"], meta["std"], colour_of(meta))

    @torch.no_grad()
    def model_outputs(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and OOD scores for an input batch."""
        f = features(self.model, x)
        logits = classify_features(self.model, f).double() / self.temperature
        probs = torch.softmax(logits, 1).numpy()
        ood = self.meta.get("ood")
        scores = ood_scores(f.numpy(), ood) if ood else np.full(len(probs), np.nan)
        return probs, scores

    def crops_tensor(self, image: Image.Image, boxes: list[Box]) -> torch.Tensor:
        """The model input for square crops of ``image`` (one row per box, same transform as a whole photo)."""
        side = int(self.meta["canonical_size"])
        return self._model_input([canonical_square(image.crop(b.as_tuple()), side) for b in boxes])

    # -- full pipeline -------------------------------------------------------------
    def predict_image(
        self,
        image: Image.Image,
        crop_share: float = 0.0,
        gate: bool = True,
        point: tuple[float, float] | None = None,
        rule: str = TAP_RULE,
    ) -> TriageResult:
        """Quality gate, model, OOD gate and decision for a decoded RGB image.

        Args:
            image: the decoded photo (orientation applied).
            crop_share: bottom share to drop first (atlas watermarks; 0 for uploads).
            gate: run the photo-quality and out-of-distribution checks.
            point: a tapped spot, ``(x, y)`` fractions of width and height. The crops around it
                (:func:`triage.inference.tap.tap_boxes`) are judged instead of the whole photo and combined by
                ``rule``; the checks run on the framed area (the largest crop). ``None``: the whole photo.
            rule: how the crops' answers combine (:mod:`triage.inference.combine`).
        """
        t0 = time.perf_counter()
        image = crop_bottom(image, crop_share)
        boxes: list[Box] | None = None
        judged = image
        if point is not None:
            boxes = tap_boxes(*image.size, point)
            if not boxes:
                return self._crop_too_small(image, point, t0)
            judged = image.crop(boxes[-1].as_tuple())
        report = assess_quality(judged, self.quality_thresholds)
        t1 = time.perf_counter()
        quality_reasons = report.reasons if gate else []
        probs = score = None
        if not quality_reasons:
            x = self.input_tensor(image) if boxes is None else self.crops_tensor(image, boxes)
            p, s = self.model_outputs(x)
            # One row for a whole photo; for a tap one row per crop, gated on the framed (largest) one.
            probs = combine_crop_probabilities(p, self.thresholds, rule)[1]
            score = float(s[-1])
        t2 = time.perf_counter()
        ood_thr = self.meta.get("ood", {}).get("threshold") if gate else None
        outcome, codes = decide_outcome(probs, quality_reasons, score, self.thresholds, ood_thr)
        sentences = report.messages() if quality_reasons else []
        if point is not None and "too_little_skin" in codes:
            # About the place tapped, not the whole photo: the framed area around it is mostly not skin.
            sentences = [TAP_NOT_SKIN_MESSAGE] + [m for m in sentences if m != MESSAGES["too_little_skin"]]
        if "not_like_skin" in codes:
            sentences.append(OOD_MESSAGE)
        if "unsure" in codes:
            sentences.append(UNSURE_MESSAGE)
        if "refer_threshold" in codes:
            sentences.append(REFER_MESSAGE)
        if boxes is not None and min(image.size) < MIN_JUDGED_SIDE:
            codes.append("tap_low_resolution")
            sentences.append(TAP_LOW_RES_MESSAGE)
        result = TriageResult(
            outcome=outcome,
            probabilities=None
            if probs is None
            else {o: round(float(v), 4) for o, v in zip(OUTCOMES, probs, strict=True)},
            reasons=sentences,
            reason_codes=codes,
            quality={k: round(float(v), 3) for k, v in report.measures.items()},
            ood_score=None if score is None or np.isnan(score) else round(score, 3),
            model_version=self.version,
            timings_ms={
                "checks": round((t1 - t0) * 1e3, 2),
                "model": round((t2 - t1) * 1e3, 2),
                "total": round((time.perf_counter() - t0) * 1e3, 2),
            },
        )
        if boxes is not None:
            result.point = [round(float(v), 4) for v in point]
            result.area = list(boxes[-1].fractions(*image.size))
        return result

    def _crop_too_small(self, image: Image.Image, point: tuple[float, float], t0: float) -> TriageResult:
        """``cant-assess`` for a tap whose crops would all be too few pixels to judge."""
        return TriageResult(
            outcome=CANT_ASSESS,
            probabilities=None,
            reasons=[CROP_TOO_SMALL_MESSAGE],
            reason_codes=["crop_too_small"],
            quality={"width": float(image.width), "height": float(image.height)},
            model_version=self.version,
            timings_ms={"total": round((time.perf_counter() - t0) * 1e3, 2)},
            point=[round(float(v), 4) for v in point],
        )

    def predict_bytes(self, data: bytes, gate: bool = True, point: tuple[float, float] | None = None) -> TriageResult:
        """Decode an upload and triage it (around ``point`` when given). Raises UploadError for unreadable files."""
        return self.predict_upload(data, gate, point)[0]

    def predict_upload(
        self, data: bytes, gate: bool = True, point: tuple[float, float] | None = None
    ) -> tuple[TriageResult, Image.Image]:
        """:meth:`predict_bytes`, also returning the decoded photo (to show the framed area on it).

        Raises:
            UploadError: the file is not a readable photo.
        """
        return self._predict_decoded(lambda: decode_upload(data), 0.0, gate, point)

    def predict_path(
        self,
        path: str | Path,
        crop_share: float = 0.0,
        gate: bool = True,
        point: tuple[float, float] | None = None,
    ) -> TriageResult:
        """Triage a file on disk (around ``point`` when given). Raises UploadError for unreadable files."""
        result, _ = self._predict_decoded(lambda: decode_path(path), crop_share, gate, point)
        result.file = str(path)
        return result

    def _predict_decoded(self, decode, crop_share: float, gate: bool, point) -> tuple[TriageResult, Image.Image]:
        """Decode (timed into the result's ``decode`` and ``total``), then :meth:`predict_image`."""
        t0 = time.perf_counter()
        photo = decode()
        decode_ms = (time.perf_counter() - t0) * 1e3
        result = self.predict_image(photo.image, crop_share, gate, point)
        result.timings_ms["decode"] = round(decode_ms, 2)
        result.timings_ms["total"] = round(result.timings_ms["total"] + decode_ms, 2)
        return result, photo.image


__all__ = [
    "Triage",
    "TriageResult",
    "ModelLoadError",
    "UploadError",
    "decide_outcome",
    "FlagError",
    "with_answers",
    "combine_reasons",
    "combine_results",
    "most_cautious_index",
]
