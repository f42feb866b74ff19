"""The Gradio app: a kind answer for clients, a second look for therapists, Learn and About.

Built by :func:`build_app`; nothing is loaded at import. This module is the page (theme, CSS, the Blocks) and
its wiring; what each event does is in :mod:`triage.app.handlers`. Photos are handled in memory: every event
that takes one reads the upload and deletes its file at once (:func:`triage.app.upload_dir.take_upload`), and
nothing the app shows or offers for download (heatmap, printable summary) is written to disk. No flagging,
analytics or share links.
"""

from __future__ import annotations

import gradio as gr

from triage.app.about import about_markdown, therapist_limits_markdown
from triage.app.busy import answer_busy_when_full
from triage.app.content_loader import contraindications, learn_pages, page

# The app's public names (tests and scripts import them from here); they live with the handlers.
from triage.app.handlers import (
    ANSWER_LABELS,
    HEATMAP_LABEL,
    RESEMBLANCE_NOTE,
    TAP_HINT,
    Handlers,
    PhotoAnswer,
    education_for,
    lead_answer,
    outcome_card,
    photo_answers_html,
    predict_within_limit,
    summary_html,
    summary_verdict,
)
from triage.app.upload_dir import use_upload_register
from triage.app.wording import HEADLINES, NEXT_STEP, THERAPIST_NEXT_STEP
from triage.core.red_flags import RED_FLAGS
from triage.inference import limits
from triage.inference.engine import Triage
from triage.inference.tap import MAX_PHOTOS

#: The therapist's contraindication checklist: the very list the client reads on "Who should wait".
CHECKLIST = [c.label for c in contraindications()]
#: The therapist's details label: it explains its own jargon where the therapist meets it.
DETAILS_LABEL = (
    "Photo quality, out-of-distribution score (how unlike the training photos this one is: higher is less alike), "
    "model version"
)
#: Gradio's ``max_file_size`` (bytes); the same number the decoder enforces.
UPLOAD_LIMIT = limits.MAX_UPLOAD_BYTES

CSS = """
.outcome-card {border-radius: 12px; padding: 16px; color: #fff; margin-bottom: 8px}
.outcome-card h2 {margin: 0 0 6px 0; font-size: 1.3rem; color: #fff}
.outcome-card p {margin: 4px 0; color: #fff}
.outcome-card strong {color: #fff}
.disclaimer {font-size: 0.9rem; background: #f4f1ea; color: #333; border-radius: 8px; padding: 10px}
.prob-title, .gradcam figcaption {font-weight: 600; margin: 0 0 6px 0}
.prob-row {display: grid; grid-template-columns: minmax(8em, 11em) 1fr 3em; gap: 8px; align-items: center}
.prob-bar {background: #e6e6e6; border-radius: 4px; height: 12px; overflow: hidden}
.prob-bar span {display: block; height: 100%; background: #5a6b86}
.prob-value {text-align: right; font-variant-numeric: tabular-nums}
.prob-decision {font-size: 0.75rem; border: 1px solid currentColor; border-radius: 4px; padding: 0 4px}
.prob-note {margin: 8px 0 0 0}
.prob-help {margin: 6px 0 0 0; font-size: 0.85rem}
.gradcam {margin: 0}
.gradcam img {max-width: 100%; height: auto; border-radius: 8px}
/* Phones. Gradio pads its .main box 32 px a side: 8 px on a phone, 32 px from about 900 px up. Gradio copies
   rules inside @media only under ".gradio-container .contain", which is inside .main, so this one stays
   outside. It also moves tabs that do not fit into a "..." menu: narrower tab padding keeps all four in view. */
.main.app {padding-inline: clamp(8px, 5vw - 12px, 32px) !important}
@media (max-width: 480px) {
  .tab-container button {padding-left: 8px !important; padding-right: 8px !important}
}
.judged {margin: 8px 0}
.judged img {max-width: 100%; height: auto; border-radius: 8px; display: block}
.judged p {margin: 4px 0}
"""
#: The red-flag questions' heading on the client tab (triage.core.red_flags: answers can only add caution).
QUESTIONS_INTRO = (
    "**A few questions (optional).** A photo can't show these. Any answer can only make the answer more "
    "careful; skip any you like."
)
THERAPIST_QUESTIONS_INTRO = "**The client's answers to the red-flag questions** (optional; they can only add caution)."


def theme() -> gr.themes.Base:
    """A theme with system fonts only: the default one fetches Google Fonts, and the page must work offline."""
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def photo_check_queue() -> dict:
    """The event options that put a photo check in the app's one shared concurrency group."""
    # The client tab, the therapist tab and the API share one concurrency slot group: at most CONCURRENCY_LIMIT
    # photos are checked at once in the whole app (separate limits allowed three times that, each check taking
    # up to a few hundred MB for a large photo, on a 2-thread model).
    return {"concurrency_id": "photo-check", "concurrency_limit": limits.CONCURRENCY_LIMIT}


def photo_slot(label: str, webcam: dict, on: Handlers) -> list:
    """One photo with its own tapped point (kept in a State); returns ``[image, point]``."""
    image = gr.Image(type="filepath", sources=["upload", "webcam"], label=label, buttons=[], **webcam)
    note = gr.Markdown(TAP_HINT, elem_classes=["tap-note"])
    point = gr.State(None)
    # preprocess=False: the raw upload reaches our own decoder (as for the check buttons below).
    # The tap decodes the photo to learn its size, so it shares the checks' concurrency limit.
    image.select(on.tap, image, [point, note], api_visibility="private", preprocess=False, **photo_check_queue())
    # A new or removed photo forgets the old tap: it belonged to another picture.
    image.change(lambda: (None, TAP_HINT), None, [point, note], api_visibility="private", queue=False)
    return [image, point]


def photo_slots(first_label: str, webcam: dict, on: Handlers) -> list:
    """Up to :data:`MAX_PHOTOS` photos of one area, the extra ones folded away; returns the check's inputs."""
    inputs = photo_slot(first_label, webcam, on)
    with gr.Accordion(f"More photos of the same area (up to {MAX_PHOTOS} in all)", open=False):
        for k in range(2, MAX_PHOTOS + 1):
            inputs += photo_slot(f"Photo {k} of the same area (optional)", webcam, on)
    return inputs


def questions(intro: str) -> list:
    """One yes / no / not-sure radio per red-flag question, none chosen; returns them in question order."""
    gr.Markdown(intro, elem_classes=["questions-intro"])
    choices = [(label, value) for value, label in ANSWER_LABELS.items()]
    return [gr.Radio(choices, value=None, label=f.question, elem_classes=["red-flag"]) for f in RED_FLAGS]


def client_tab(on: Handlers) -> None:
    """The "Check a photo" tab: photos, the optional questions, the button and the answer."""
    with gr.Tab("Check a photo"):
        rear_camera = gr.WebcamOptions(mirror=False, constraints={"video": {"facingMode": "environment"}})
        photos = photo_slots("Close-up of the spot", {"webcam_options": rear_camera}, on)
        with gr.Group(elem_classes=["red-flags"]):
            photos += questions(QUESTIONS_INTRO)
        go = gr.Button("Check my photo", variant="primary")
        card = gr.HTML()
        edu = gr.Markdown()
        # preprocess=False: the photo reaches our own decoder untouched. gr.Image's preprocessing opens it
        # with PIL first, so a file that is not a photo ended in a bare "Error" badge, never in our message.
        go.click(on.client, photos, [card, edu], api_visibility="private", preprocess=False, **photo_check_queue())


def therapist_tab(on: Handlers) -> None:
    """The "Therapist" tab: the check with bars, heatmap and details, then the checklist and printable summary."""
    with gr.Tab("Therapist"):
        # The lowest measured catch rate first: the therapist weighs the answer against it.
        gr.Markdown(therapist_limits_markdown(on.triage.meta), elem_classes=["therapist-limits"])
        t_photos = photo_slots("Photo", {}, on)
        with gr.Accordion("The client's answers to the red-flag questions", open=False):
            t_photos += questions(THERAPIST_QUESTIONS_INTRO)
        t_go = gr.Button("Analyse", variant="primary")
        t_card = gr.HTML()
        with gr.Row():
            # Bars only, no headline class: the outcome card above is the decision (triage.app.therapist_view).
            t_probs = gr.HTML()
            t_heat = gr.HTML()  # inline image: gr.Image would save it as a file in Gradio's cache
        t_details = gr.JSON(label=DETAILS_LABEL)
        state = gr.State()
        ticks = gr.CheckboxGroup(CHECKLIST, label="Contraindication checklist (tick what applies)")
        notes = gr.Textbox(label="Notes for the client file", lines=2)
        t_sum = gr.Button("Make printable summary")
        t_file = gr.HTML()  # a download link that carries the summary itself
        t_go.click(
            on.therapist,
            t_photos,
            [t_card, t_probs, t_details, t_heat, state],
            api_visibility="private",
            preprocess=False,  # as for the client tab
            **photo_check_queue(),
        )
        t_sum.click(on.make_summary, [state, ticks, notes], t_file, api_visibility="private")


def api_endpoint(on: Handlers) -> None:
    """The documented API (``/triage``), on hidden components.

    One file (optionally the tapped point, "X,Y", and the red-flag answers, "changed,eye=no") in, the JSON
    result out.
    """
    api_in = gr.File(visible=False, type="filepath")
    api_point = gr.Textbox(visible=False)
    api_flags = gr.Textbox(visible=False)
    api_out = gr.JSON(visible=False)
    api_btn = gr.Button(visible=False)
    # preprocess=False: gr.File's preprocessing leaves an empty temporary file in the cache on every call.
    api_btn.click(
        on.api, [api_in, api_point, api_flags], api_out, api_name="triage", preprocess=False, **photo_check_queue()
    )


def build_app(triage: Triage, therapist_auth: tuple[str, str] | None = None) -> gr.Blocks:
    """Build the whole app around a loaded model. Nothing is launched here."""
    # Gradio's own cleanup is the backstop for a photo that is uploaded but never sent for checking.
    backstop = (limits.UPLOAD_SWEEP_EVERY_S, limits.UNCHECKED_UPLOAD_MAX_AGE_S)
    with gr.Blocks(title="Skin spot triage (educational)", analytics_enabled=False, delete_cache=backstop) as app:
        # Counts the uploads of each photo, so that a check deletes a file no other request still needs.
        use_upload_register(app)
        on = Handlers(triage, app)
        gr.Markdown(
            "# Skin spot triage\nAn educational second look before an extraction facial. **Not a medical opinion.**"
        )
        client_tab(on)
        therapist_tab(on)
        with gr.Tab("Learn"):
            for title, name in learn_pages():
                with gr.Accordion(title, open=name == "milia"):
                    gr.Markdown(page(name))
        with gr.Tab("About"):
            # The model in a client's words (the technical card is in the repository), then privacy.
            gr.Markdown(about_markdown(triage.meta))
        api_endpoint(on)
    # The queue's bounds belong to the app, so every launcher gets them (serve.py sets the same values).
    app.queue(default_concurrency_limit=limits.CONCURRENCY_LIMIT, max_size=limits.QUEUE_MAX_SIZE)
    answer_busy_when_full(app, on.release)  # over the queue's bound: a plain sentence, and no file left
    return app


__all__ = [
    "build_app",
    "theme",
    "CSS",
    "UPLOAD_LIMIT",
    "CHECKLIST",
    "DETAILS_LABEL",
    # The app's public names from triage.app.handlers and triage.app.wording, importable from here.
    "HEADLINES",
    "NEXT_STEP",
    "THERAPIST_NEXT_STEP",
    "HEATMAP_LABEL",
    "RESEMBLANCE_NOTE",
    "PhotoAnswer",
    "education_for",
    "lead_answer",
    "outcome_card",
    "photo_answers_html",
    "predict_within_limit",
    "summary_html",
    "summary_verdict",
]
