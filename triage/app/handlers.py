"""What each event of the app does: the answers' wording and HTML, and :class:`Handlers`, the events themselves.

The Blocks and their wiring are in :mod:`triage.app.layout`. Photos are handled in memory: every event that
takes one reads the upload and deletes its file at once (:func:`triage.app.upload_dir.take_upload`), and
nothing the app shows or offers for download (heatmap, printable summary) is written to disk.
"""

from __future__ import annotations

import html
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from pathlib import Path

# Real imports, not TYPE_CHECKING ones: Gradio resolves the handlers' type hints at run time to inject
# gr.SelectData, and a hint it cannot resolve would silently drop the injection.
import gradio as gr
from markdown_it import MarkdownIt
from PIL import Image

from triage.app.content_loader import EMERGENCY_LINE, OUTCOME_PAGES, contraindications, page
from triage.app.framed import area_box, data_uri, framed_thumbnail
from triage.app.therapist_view import heatmap_html, probability_panel, summary_link_html
from triage.app.upload_dir import release_upload, take_upload, upload_path
from triage.app.wording import (
    URGENCY_WORDS,
    headline,
    next_step,
    outcome_words,
    resemblance_lines,
)
from triage.core.outcomes import CANT_ASSESS, OUTCOMES
from triage.core.red_flags import NO, NOT_SURE, RED_FLAGS, YES, FlagError, parse_flags
from triage.inference import limits
from triage.inference.decode import UploadError, decode_upload
from triage.inference.engine import Triage, TriageResult, combine_results, most_cautious_index, with_answers
from triage.inference.tap import PointError, parse_point, point_from_pixels

log = logging.getLogger(__name__)

COLOURS = {
    "milia-like": "#2f6f4f",
    "pustule": "#8a5a00",
    "other": "#3b4f7a",
    "refer-to-doctor": "#9b1c1c",
    CANT_ASSESS: "#555555",
}
#: The therapist's heatmap caption: it explains its own jargon where the therapist meets it.
HEATMAP_LABEL = (
    "Where the model looked (Grad-CAM heatmap of the photo's central square: the redder an area, the more it "
    "swayed the answer)"
)
TAP_HINT = "Several spots in the photo? Tap the one you mean, and we'll judge the area around it."
#: How each answer is offered and printed.
ANSWER_LABELS = {YES: "Yes", NO: "No", NOT_SURE: "Not sure"}


def _disclaimer_parts() -> tuple[str, str]:
    """``(title, body)`` of the disclaimer page (its ``# heading`` and its text)."""
    lines = [s.strip() for s in page("disclaimer").strip().splitlines() if s.strip()]
    if lines and lines[0].startswith("#"):
        return lines[0].lstrip("#").strip(), " ".join(lines[1:])
    return "", " ".join(lines)


def disclaimer_text() -> str:
    """The disclaimer as one plain paragraph ("Please note: ...")."""
    title, body = _disclaimer_parts()
    return f"{title}: {body}" if title else body


def disclaimer_html() -> str:
    """The disclaimer every result carries."""
    # The heading set apart: flattened into the text it read "Please note This tool is...".
    title, body = _disclaimer_parts()
    lead = f"<strong>{html.escape(title)}:</strong> " if title else ""
    return f"<div class='disclaimer'>{lead}{html.escape(body)}</div>"


def outcome_card(result: TriageResult, below: str = "", for_therapist: bool = False) -> str:
    """HTML card: headline, next step, reasons; then ``below`` (the photos as judged), then the disclaimer.

    The headline and next step follow the answer's urgency (:func:`triage.app.wording.headline`): a yes to the
    eye question leads with 999, whatever the photo showed.

    Args:
        result: the answer (for several photos, the combined one).
        below: HTML under the card (the photos as judged).
        for_therapist: the next step written for the therapist, not the client, and the urgency in words.
    """
    o, urgency = result.outcome, result.urgency
    step = f"<p>{next_step(o, urgency, for_therapist)}</p>"  # the app's own sentences, as the headline
    if for_therapist:
        step += f"<p class='urgency'><strong>How soon:</strong> {html.escape(URGENCY_WORDS[urgency])}</p>"
        # The therapist tab shows no outcome page, so the emergency line (on every one of them) comes here.
        step += f"<p>{html.escape(EMERGENCY_LINE)}</p>"
    reasons = "".join(f"<p>• {html.escape(r)}</p>" for r in result.reasons)
    return (
        f"<div class='outcome-card' style='background:{COLOURS[o]}' data-urgency='{urgency}' data-outcome='{o}'>"
        f"<h2>{headline(o, urgency)}</h2>{step}{reasons}</div>{below}{disclaimer_html()}"
    )


def education_for(outcome: str) -> str:
    """Markdown shown under a result."""
    parts = [page(f"outcome_{outcome}")] + [page(p) for p in OUTCOME_PAGES.get(outcome, [])]
    return "\n\n---\n\n".join(parts)


def predict_within_limit(
    pool: ThreadPoolExecutor, triage: Triage, data: bytes, point: tuple[float, float] | None = None
) -> tuple[TriageResult, Image.Image]:
    """``triage.predict_upload(data, point=point)``, answered within ``limits.REQUEST_TIMEOUT_S`` seconds.

    Raises:
        UploadError: ``"timeout"`` when the check takes longer (the work itself finishes in the background on
            ``pool``, which is bounded, so stuck checks cannot pile up), or whatever decoding raises.
    """
    timeout = limits.REQUEST_TIMEOUT_S
    future = pool.submit(triage.predict_upload, data, True, point)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()  # Still waiting for a worker: it never starts. Already running: it cannot be stopped.
        log.warning("check abandoned after %.1f s (request timeout)", timeout)
        raise UploadError("timeout") from None


@dataclass
class PhotoAnswer:
    """One photo of a check: its slot number and either its result and decoded image, or a plain error."""

    number: int
    result: TriageResult | None = None
    image: Image.Image | None = None
    error: str | None = None


def tap_note(point: list[float] | None) -> str:
    """What the page says under a photo about the tapped spot."""
    if point is None:
        return TAP_HINT
    return (
        f"Spot marked ({point[0]:.0%} across, {point[1]:.0%} down): the area around it will be judged, "
        "and shown framed with the answer. Tap again to move it."
    )


def judged_area_html(answer: PhotoAnswer, several: bool) -> str:
    """The photo as judged: framed around the tapped spot. Nothing for an untapped single photo (as before)."""
    title = f"Photo {answer.number}" if several else ""
    if answer.error is not None:
        return f"<div class='judged'><p><strong>{title}:</strong> {html.escape(answer.error)}</p></div>"
    r = answer.result
    if r is None or answer.image is None or (r.area is None and not several):
        return ""
    what = "the framed area around the spot you tapped" if r.area is not None else "the whole photo"
    lead = (
        f"<strong>{title}:</strong> {html.escape(headline(r.outcome, r.urgency))} ({what})"
        if several
        else f"We judged {what}."
    )
    alt = f"{title or 'Your photo'} with the judged area framed" if r.area is not None else f"{title}"
    src = data_uri(framed_thumbnail(answer.image, r.area, r.point))
    return (
        f"<div class='judged' data-outcome='{r.outcome}'><p>{lead}</p><img src='{src}' alt='{html.escape(alt)}'></div>"
    )


def photo_answers_html(answers: list[PhotoAnswer]) -> str:
    """The framed pictures (and per-photo answers when there are several photos) under the outcome card."""
    several = len(answers) > 1
    return "".join(judged_area_html(a, several) for a in answers)


def lead_answer(answers: list[PhotoAnswer]) -> tuple[TriageResult, PhotoAnswer]:
    """The answer that leads: the only photo's, or the most cautious of several (saying which photo drove it)."""
    done = [a for a in answers if a.result is not None]
    if len(done) == 1:
        return done[0].result, done[0]
    named = [replace(a.result, file=f"Photo {a.number}") for a in done]
    combined = combine_results(named)
    combined.file = None
    return combined, done[most_cautious_index(named)]


def judged_image(answer: PhotoAnswer) -> Image.Image:
    """The pixels that were judged: the framed area for a tapped photo, else the whole photo."""
    if answer.result is None or answer.result.area is None:
        return answer.image
    return answer.image.crop(area_box(answer.image.size, answer.result.area))


def summary_verdict(outcome: str, ticked: list[str]) -> str:
    """The summary's verdict for an answer and the ticked checklist items; pure.

    The answers' one rule: whatever sends the client to a doctor, or away from an extraction, comes first. For
    "other" that is a doctor unless the therapist confirms in person that it is clearly a blackhead (the
    "other" page's rule).
    """
    actions = {c.label: c.action for c in contraindications()}
    ticked_actions = {actions.get(t, "wait") for t in ticked}  # an unknown item is treated as a reason to wait
    if outcome == "refer-to-doctor" or "doctor" in ticked_actions:
        return "Not ready: a doctor's check comes first."
    if outcome == "other":
        return (
            "Not ready: a doctor's check comes first, unless the therapist confirms in person that it is clearly "
            "a blackhead. This answer is sometimes given for skin cancers: a single dark spot, or one that is new "
            "or changing, goes to a doctor."
        )
    if outcome == CANT_ASSESS:
        return "Not ready: a clearer photo comes first (or a doctor's check, if the client is worried)."
    if outcome == "pustule":
        return "Not ready yet: the inflamed spots settle first; no extraction or facial over them."
    if outcome != "milia-like" or "wait" in ticked_actions:
        return "Not ready yet: see the ticked items and the outcome above."
    if ticked:
        return "Talk through the ticked items first; then ready to book, subject to the in-person check."
    return "Ready to book a milia consultation / extraction facial, subject to the in-person check."


#: Under the resemblance lines: what they are not (a number there read like the risk of something).
RESEMBLANCE_NOTE = (
    "This says how alike the photo is to the example photos of each group, not how likely the spot is to be "
    "one thing or another."
)


def answers_from(values: list[str | None] | tuple) -> dict[str, str]:
    """The red-flag answers from the questions' radio values, in :data:`RED_FLAGS` order (unanswered left out)."""
    return {f.key: v for f, v in zip(RED_FLAGS, values, strict=True) if v}


def answers_html(answers: dict[str, str] | None) -> str:
    """The red-flag questions as answered, for the printable summary (one line each; skipped ones said so)."""
    if not answers:
        return "<p>Not answered.</p>"
    lines = "".join(
        f"<li>{html.escape(f.question)} <strong>{ANSWER_LABELS[answers[f.key]] if f.key in answers else 'Skipped'}"
        "</strong></li>"
        for f in RED_FLAGS
    )
    return f"<ul>{lines}</ul>"


def summary_html(result: TriageResult, ticked: list[str], notes: str) -> str:
    """Printable booking-readiness summary for the client file: plain words, no outcome codes or probabilities."""
    verdict = summary_verdict(result.outcome, ticked)
    alike = resemblance_lines(result.probabilities, result.outcome, result.reason_codes)
    alike_html = "".join(f"<li>{html.escape(line)}</li>" for line in alike)
    ticks = "".join(f"<li>{html.escape(t)}</li>" for t in ticked) or "<li>none ticked</li>"
    return f"""<!doctype html><html><head><meta charset='utf-8'><title>Consultation summary</title>
<style>body{{font-family:sans-serif;max-width:720px;margin:24px auto;color:#222}}</style></head><body>
<h1>Consultation summary</h1><p>Created {time.strftime("%Y-%m-%d %H:%M")}. No photo is included or stored.</p>
<h2>Triage outcome: {html.escape(outcome_words(result.outcome))}</h2><p>{html.escape(verdict)}</p>
<p><strong>How soon:</strong> {html.escape(URGENCY_WORDS[result.urgency])}</p>
<h3>How closely the photo resembles each group</h3><ul>{alike_html}</ul><p>{html.escape(RESEMBLANCE_NOTE)}</p>
<h3>Red-flag questions (the client's answers)</h3>{answers_html(result.answers)}
<h3>Contraindication checklist (ticked)</h3><ul>{ticks}</ul>
<h3>Notes</h3><p>{html.escape(notes or "")}</p>
<h3>Before the appointment</h3>{_md_to_html(page("preparing"))}
<h3>After-care</h3>{_md_to_html(page("aftercare"))}
<p><em>{html.escape(disclaimer_text())}</em></p>
<p>Model version {html.escape(result.model_version)}.</p></body></html>"""


def _md_to_html(md: str) -> str:
    """A content page as HTML for the summary, under the summary's own ``<h3>``.

    The page's ``# title`` is dropped and its ``##`` sections (the after-care time periods) become ``<h4>``;
    raw HTML in the page is not passed on.
    """
    body = md.split("\n", 1)[1] if md.startswith("# ") else md
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(body)
    for tok in tokens:
        if tok.type in ("heading_open", "heading_close"):
            tok.tag = f"h{min(int(tok.tag[1]) + 2, 6)}"
    return parser.renderer.render(tokens, parser.options, {})


class Handlers:
    """The app's events, bound to one loaded model and the Blocks they serve.

    The methods are wired as Gradio event functions by :func:`triage.app.layout.build_app`; Gradio reads their
    signatures (bound, so without ``self``), which is why ``client`` and ``therapist`` take ``*inputs``.

    Args:
        triage: the loaded model.
        blocks: the app whose upload cache the photos are taken from.
    """

    def __init__(self, triage: Triage, blocks: gr.Blocks) -> None:
        self.triage = triage
        self.blocks = blocks
        # Every check runs here, so the request timeout holds for all tabs and the API (threads start on first use).
        self.pool = ThreadPoolExecutor(max_workers=limits.TIMEOUT_WORKERS, thread_name_prefix="triage-check")
        self.ood_threshold = (triage.meta.get("ood") or {}).get("threshold")

    def take(self, payload: str | dict | None) -> bytes:
        """The photo's bytes, its file already deleted."""
        # Whatever happens next (a result, a refusal, a timeout), no copy of the photo stays on disk.
        return take_upload(payload, self.blocks.GRADIO_CACHE, self.blocks.upload_file_set)

    def release(self, path: Path) -> None:
        """Give back an upload no check will take (its request was refused): its file goes unless shared."""
        release_upload(path, self.blocks.GRADIO_CACHE, self.blocks.upload_file_set)

    def check(self, slots: tuple) -> list[PhotoAnswer]:
        """Answer every photo given (``slots`` is photo, point, photo, point...); one bad photo spoils nothing."""
        answers = []
        for k in range(0, len(slots), 2):
            payload, point = slots[k], (slots[k + 1] if k + 1 < len(slots) else None)  # a lone photo: no tap
            if not payload:
                continue
            answer = PhotoAnswer(number=k // 2 + 1)
            try:
                answer.result, answer.image = predict_within_limit(
                    self.pool, self.triage, self.take(payload), None if point is None else tuple(point)
                )
            except UploadError as err:
                answer.error = err.user_message
            answers.append(answer)
        return answers

    def run(
        self, inputs: tuple, for_therapist: bool = False
    ) -> tuple[str, str, TriageResult | None, PhotoAnswer | None]:
        """Photos (photo, point, ...) then one value per red-flag question: the card, the page, the result."""
        slots, flag_values = inputs[: -len(RED_FLAGS)], inputs[-len(RED_FLAGS) :]
        answers = self.check(slots)
        if not any(a.result is not None for a in answers):
            message = next((a.error for a in answers), None) or "Please add a photo first."
            msg = (
                "<div class='outcome-card' style='background:#555'><h2>We couldn't open this file</h2>"
                f"<p>{html.escape(message)}</p></div>"
            )
            return msg + disclaimer_html(), "", None, None
        result, driver = lead_answer(answers)
        # After the safety gate and the combining, so declined photos are still named; can only add caution.
        result = with_answers(result, answers_from(flag_values))
        card = outcome_card(result, photo_answers_html(answers), for_therapist)
        return card, education_for(result.outcome), result, driver

    def client(self, *inputs: object) -> tuple[str, str]:
        """The client tab's check: the outcome card and the page to read under it."""
        card, edu, _, _ = self.run(inputs)
        return card, edu

    def therapist(self, *inputs: object) -> tuple[str, str, dict, str, dict | None]:
        """The therapist tab's check: card, probability bars, details, heatmap, and the result kept in a State."""
        card, edu, result, driver = self.run(inputs, for_therapist=True)
        if result is None:
            return card, "", {}, "", None
        heat = ""
        if result.probabilities is not None:
            from triage.inference.gradcam import gradcam, overlay

            # The Grad-CAM of the photo that led, on what was judged (the framed area when it was tapped).
            img = judged_image(driver)
            cls = OUTCOMES.index(result.outcome) if result.outcome in OUTCOMES else 3
            cam = gradcam(self.triage.model, self.triage.input_tensor(img), cls)
            heat = heatmap_html(overlay(img, cam), HEATMAP_LABEL)
        details = {
            "urgency": result.urgency,
            "quality": result.quality,
            "ood_score": result.ood_score,
            "model_version": result.model_version,
            "reason_codes": result.reason_codes,
            "client_answers": {
                f.question: ANSWER_LABELS[v] for f in RED_FLAGS if (v := (result.answers or {}).get(f.key))
            },
            "timings_ms": result.timings_ms,
        }
        if result.area is not None:
            details |= {"tapped_point": result.point, "judged_area": result.area}
        panel = probability_panel(result, self.triage.thresholds, self.ood_threshold)
        return card, panel, details, heat, result.to_dict()

    def tap(self, payload: str | dict | None, evt: gr.SelectData) -> tuple[list[float] | None, str]:
        """A tap on a photo: the spot's place as fractions of the photo as shown (orientation applied)."""
        try:
            # Read, not taken: the file stays until the check takes it (a tap is not an answer).
            path = upload_path(payload)
            if path is None or not path.is_file():
                raise UploadError("gone", "This photo is no longer here. Please add it again, then tap the spot.")
            width, height = decode_upload(path.read_bytes()).original_size
            x, y = evt.index[:2]
            point = point_from_pixels(float(x), float(y), width, height)
        except UploadError as err:
            return None, html.escape(err.user_message)
        except (PointError, TypeError, ValueError):
            return None, "That tap was outside the photo. Please tap on the spot itself."
        return [round(point[0], 4), round(point[1], 4)], tap_note(list(point))

    def make_summary(self, state: dict | None, ticked: list[str] | None, notes: str | None) -> str:
        """The printable summary of the last therapist check, as a download link (nothing when there is none)."""
        if not state:
            return ""
        result = TriageResult(**{k: v for k, v in state.items() if k in TriageResult.__dataclass_fields__})
        # Handed over inside the page as a download link: the server writes no file holding the client's notes
        # and ticked health items (a gr.File output would be a file in Gradio's cache until it is cleaned).
        return summary_link_html(summary_html(result, ticked or [], notes))

    # No docstring: Gradio would publish it as the documented API's description.
    def api(self, payload: str | dict | None, point: str | None = None, flags: str | None = None) -> dict:
        try:
            # The upload is taken (and its file deleted) first: a refused point or flag must not leave the photo.
            data = self.take(payload)
            answers = parse_flags(flags)
            result = predict_within_limit(self.pool, self.triage, data, parse_point(point))[0]
            return with_answers(result, answers).to_dict()
        except (UploadError, PointError) as err:
            return {"error": err.user_message}
        except FlagError as err:
            return {"error": str(err)}
