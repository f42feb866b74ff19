"""HTML pieces of the therapist tab, built in memory: nothing here is written to disk.

* :func:`probability_panel`: the calibrated probabilities as bars, with no headline class (a big "milia-like"
  above a "see a doctor" card reads as the opposite of the decision), one line saying why when the
  decision is not the most probable group, and one plain sentence each on what "calibrated probabilities"
  and the "referral threshold" are (:func:`panel_help`).
* :func:`heatmap_html`: the Grad-CAM overlay inline as a ``data:`` URL. Returned to ``gr.Image`` it would be
  saved as a file in Gradio's cache and served from there.
* :func:`summary_link_html`: the printable summary as a ``data:`` download link, for the same reason: it
  holds the client's notes and ticked health items.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image

from triage.core.outcomes import CANT_ASSESS, OUTCOMES
from triage.core.policy import Thresholds
from triage.inference.engine import TriageResult

PANEL_TITLE = "How closely the photo resembles each group (calibrated probabilities)"
HEATMAP_TITLE = "Where the model looked (Grad-CAM)"
SUMMARY_FILE_NAME = "consultation-summary.html"
NO_PROBABILITIES = "No probabilities: the photo did not pass the photo checks, so the model did not run."
#: The two terms the panel and its note use, each in one plain sentence.
CALIBRATED_HELP = (
    "Calibrated probabilities: the model's scores for each group, adjusted on photos it did not learn from so "
    "that, across many photos like its examples, a group shown at 0.30 was the right one about 3 times in 10."
)
REFERRAL_HELP = (
    "Referral threshold: the refer-to-doctor probability at which the answer becomes a doctor's check "
    "({limits}), set low on purpose so that few spots needing a doctor are missed, even when another group is "
    "more probable."
)


def panel_help(thresholds: Thresholds) -> list[str]:
    """What "calibrated probabilities" and "referral threshold" mean, with the thresholds in use."""
    limits = f"here {thresholds.refer:.2f}"
    if thresholds.refer_other is not None and thresholds.refer_other > thresholds.refer:
        limits += f", or {thresholds.refer_other:.2f} when 'other' is the likeliest of the other groups"
    return [CALIBRATED_HELP, REFERRAL_HELP.format(limits=limits)]


def decision_note(result: TriageResult, thresholds: Thresholds, ood_threshold: float | None = None) -> str | None:
    """One line saying why the decision is not the most probable group, or ``None`` when it is.

    Args:
        result: the engine's answer.
        thresholds: the decision policy's operating point (``Triage.thresholds``).
        ood_threshold: the out-of-distribution limit (``Triage.meta["ood"]["threshold"]``), if any.
    """
    probs = result.probabilities
    if not probs:
        return None
    top = max(probs, key=probs.get)
    if result.outcome == top:
        return None
    if result.outcome == "refer-to-doctor":
        p = probs["refer-to-doctor"]
        limit = float(thresholds.refer_for(np.array([[probs[o] for o in OUTCOMES]]))[0])
        if "refer_threshold" in result.reason_codes or p >= limit:
            return f"refer-to-doctor: its probability, {p:.2f}, is at or above the referral threshold of {limit:.2f}."
        return (
            f"refer-to-doctor: the highest probability, {probs[top]:.2f} ({top}), is below "
            f"{thresholds.abstain:.2f}, too unsure to name one group."
        )
    if result.outcome == CANT_ASSESS and result.ood_score is not None and ood_threshold is not None:
        return (
            f"can't assess: the photo is unlike the skin photos the model learned from (out-of-distribution "
            f"score {result.ood_score:.1f}, limit {ood_threshold:.1f}), so these probabilities are not used."
        )
    return f"{result.outcome}: set by the decision policy's cautious rules, not by the highest probability."


def probability_panel(result: TriageResult, thresholds: Thresholds, ood_threshold: float | None = None) -> str:
    """The probability bars (fixed order, no headline) and, when needed, the one-line reason for the decision."""
    title = f"<p class='prob-title'>{html.escape(PANEL_TITLE)}</p>"
    if not result.probabilities:
        return f"<div class='prob-panel'>{title}<p class='prob-note'>{html.escape(NO_PROBABILITIES)}</p></div>"
    rows = []
    for outcome in OUTCOMES:
        p = float(result.probabilities.get(outcome, 0.0))
        mark = " <span class='prob-decision'>decision</span>" if outcome == result.outcome else ""
        rows.append(
            f"<div class='prob-row' data-outcome='{outcome}'><span class='prob-name'>{outcome}{mark}</span>"
            f"<span class='prob-bar'><span style='width:{100 * p:.1f}%'></span></span>"
            f"<span class='prob-value'>{p:.2f}</span></div>"
        )
    note = decision_note(result, thresholds, ood_threshold)
    note_html = f"<p class='prob-note'>{html.escape(note)}</p>" if note else ""
    help_html = "".join(f"<p class='prob-help'>{html.escape(line)}</p>" for line in panel_help(thresholds))
    return (
        f"<div class='prob-panel' data-decision='{result.outcome}'>{title}{''.join(rows)}{note_html}{help_html}</div>"
    )


def heatmap_html(image: Image.Image, caption: str = HEATMAP_TITLE) -> str:
    """The Grad-CAM overlay as an inline image (JPEG in a ``data:`` URL; a fresh image, so no metadata)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=85)
    src = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        f"<figure class='gradcam'><figcaption>{html.escape(caption)}</figcaption>"
        f"<img src='{src}' alt='Heatmap over the photo: red marks the areas that weighed most in the answer'>"
        "</figure>"
    )


def summary_link_html(document: str) -> str:
    """A download link that carries the summary itself (``data:`` URL): the server keeps no copy."""
    src = "data:text/html;charset=utf-8;base64," + base64.b64encode(document.encode("utf-8")).decode("ascii")
    return (
        f"<a class='summary-download' download='{SUMMARY_FILE_NAME}' href='{src}'>"
        "Download the summary (HTML; open it and print to PDF from the browser)</a>"
    )


__all__ = [
    "decision_note",
    "panel_help",
    "probability_panel",
    "heatmap_html",
    "summary_link_html",
    "PANEL_TITLE",
    "HEATMAP_TITLE",
]
