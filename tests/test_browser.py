"""A real browser uses the app end to end: headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

On a phone-sized (390x844) and a desktop-sized (1280x900) screen: open the page, upload a generated photo in
"Check a photo", press the button, and get the outcome card with the disclaimer. The page must fit a phone
(no sideways scrolling), keep all four tabs in view, show no banned word, and fetch nothing from another host
(the browser resolves no other host at all). Once the answer is shown the app's upload folder holds no file
(within 5 s), while the preview of the photo stays on screen, also after visiting another tab.

The therapist tab leads with the decision: the outcome card above bars-only probabilities (no headline
class), an inline Grad-CAM heatmap, and a printable summary that downloads straight from the page (the
server writes no file for it). Screenshots are kept in ``$TRIAGE_ARTIFACTS`` (default: the
test's temporary folder). Skips only when no Chromium or chromedriver binary can be found; the browser helpers
are the ones ``scripts/screenshots.py`` uses for the README.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import add_grain, files_left_after
from helpers import load_script
from selenium.webdriver.support.ui import WebDriverWait
from test_banned_words import BANNED

from triage.app.layout import HEADLINES
from triage.core.outcomes import CANT_ASSESS, OUTCOMES

shots = load_script("scripts/screenshots.py")
BROWSER = shots.find_browser()
TABS = ["Check a photo", "Therapist", "Learn", "About"]
#: Sub-pixel rounding and a thin border may add a pixel or two; a real overflow is tens of pixels.
OVERFLOW_TOLERANCE_PX = 2
#: Seconds after the answer by which the upload folder must be empty.
EMPTY_WITHIN_S = 5.0

pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no chromium/chromedriver binary found (apt-get install chromium chromium-driver, "
    "or set TRIAGE_CHROMIUM and TRIAGE_CHROMEDRIVER)",
)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    """Where screenshots go: ``$TRIAGE_ARTIFACTS`` or a temporary folder."""
    folder = Path(os.environ["TRIAGE_ARTIFACTS"]) if os.environ.get("TRIAGE_ARTIFACTS") else None
    folder = folder or tmp_path_factory.mktemp("browser-artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module, with a fresh profile."""
    driver = shots.make_driver(*BROWSER, tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def photo(make_photo, tmp_path_factory) -> Path:
    """A generated photo that passes the photo checks, so the model runs."""
    path = tmp_path_factory.mktemp("upload") / "spot.jpg"
    add_grain(make_photo(21, (360, 300))).save(path, "JPEG", quality=90)
    return path


def _visible_text(driver) -> str:
    return driver.execute_script("return document.body.innerText;")


@pytest.mark.parametrize(
    ("screen", "size", "mobile"),
    [("phone", shots.PHONE, True), ("desktop", shots.DESKTOP, False)],
    ids=["phone-390x844", "desktop-1280x900"],
)
def test_check_a_photo_in_a_real_browser(browser, app_server, app_url, photo, artefacts, screen, size, mobile):
    shots.set_viewport(browser, *size, mobile=mobile)
    shots.requested_urls(browser)  # start this screen's request record afresh
    shots.open_app(browser, app_url)
    tabs = [t.text.strip() for t in browser.find_elements("css selector", "button[role='tab']") if t.is_displayed()]
    assert tabs == TABS, f"tabs in view: {tabs} (the others went into Gradio's overflow menu)"
    shots.select_tab(browser, "Check a photo")

    got = shots.upload_and_click(browser, photo, "Check my photo", (".outcome-card", ".disclaimer"))
    shots.screenshot(browser, artefacts / f"check-a-photo-{screen}.png", shots.region(browser, got[".disclaimer"]))

    card = got[".outcome-card"]
    outcome = card.get_attribute("data-outcome")
    assert outcome in (*OUTCOMES, CANT_ASSESS)
    assert card.find_element("css selector", "h2").text.strip() == HEADLINES[outcome]
    assert "see a doctor" in got[".disclaimer"].text.lower()
    text = _visible_text(browser)
    assert not BANNED.findall(text), f"banned words on the page: {BANNED.findall(text)}"
    left = files_left_after(app_server.temp_dir, EMPTY_WITHIN_S)
    assert not left, f"the photo's file is still on the server after the answer: {left}"
    assert _preview_shown(browser), "the photo's preview broke once its file was deleted"
    if mobile:
        scroll_width, inner_width = shots.page_widths(browser)
        assert scroll_width <= inner_width + OVERFLOW_TOLERANCE_PX, f"page is {scroll_width} px wide on a {inner_width}"
        # Learn is the longest client-facing page: it must fit too.
        shots.select_tab(browser, "Learn")
        shots.screenshot(browser, artefacts / f"learn-{screen}.png")
        scroll_width, inner_width = shots.page_widths(browser)
        assert scroll_width <= inner_width + OVERFLOW_TOLERANCE_PX, f"Learn is {scroll_width} px wide on {inner_width}"
    else:
        shots.select_tab(browser, "About")
    shots.select_tab(browser, "Check a photo")  # back again: the preview is still there
    assert _preview_shown(browser), "the photo's preview broke after visiting another tab"
    outside = sorted({u for u in shots.requested_urls(browser) if not shots.is_local(u)})
    assert not outside, f"the page asked other sites for: {outside}"


def test_a_file_that_is_not_a_photo_gets_a_kind_message(browser, app_server, app_url, artefacts, tmp_path):
    # Gradio's own image preprocessing used to open the file first and answer with a bare "Error" badge.
    bad = tmp_path / "holiday.jpg"
    bad.write_text("This is a shopping list, not a photo.\n", encoding="utf-8")
    shots.set_viewport(browser, *shots.PHONE, mobile=True)
    shots.open_app(browser, app_url)

    got = shots.upload_and_click(browser, bad, "Check my photo", (".outcome-card", ".disclaimer"))
    shots.screenshot(browser, artefacts / "not-a-photo-phone.png", shots.region(browser, got[".disclaimer"]))

    card = got[".outcome-card"]
    assert card.find_element("css selector", "h2").text.strip() == "We couldn't open this file"
    message = card.find_element("css selector", "p").text.strip()
    assert message.endswith(".") and len(message.split()) >= 5, message
    assert "see a doctor" in got[".disclaimer"].text.lower()
    assert "Error" not in _visible_text(browser)
    assert not files_left_after(app_server.temp_dir, EMPTY_WITHIN_S), "the refused file is still on the server"


def _frame_box(img_element) -> tuple[float, float, float, float]:
    """Where the yellow frame is drawn in a result picture (a ``data:`` URI): its box as fractions of the picture."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    src = img_element.get_attribute("src")
    assert src.startswith("data:image/jpeg;base64,"), src[:40]  # inline: the picture is never a file on the server
    pic = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")).astype(int)
    yellow = (pic[:, :, 0] > 200) & (pic[:, :, 1] > 170) & (pic[:, :, 2] < 90)
    ys, xs = np.nonzero(yellow)
    assert len(xs) > 50, "no frame drawn on the result picture"
    h, w = yellow.shape
    return xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h


@pytest.mark.parametrize(
    ("screen", "size", "mobile"),
    [("phone", shots.PHONE, True), ("desktop", shots.DESKTOP, False)],
    ids=["phone-390x844", "desktop-1280x900"],
)
def test_tap_the_spot_in_a_real_browser(browser, app_url, artefacts, tmp_path, screen, size, mobile):
    # A skin-like close-up with pale bumps (nothing yellow in it, so the frame can be found by its colour).
    photo = shots.skin_like_photo(tmp_path / "cheek.jpg", size=480)
    shots.set_viewport(browser, *size, mobile=mobile)
    shots.open_app(browser, app_url)
    shots.select_tab(browser, "Check a photo")
    shots.upload_photo(browser, photo)

    shots.tap_photo(browser, 0.3, 0.6)
    got = shots.click_and_wait(browser, "Check my photo", (".outcome-card", ".judged img", ".disclaimer"))
    shots.screenshot(browser, artefacts / f"tap-{screen}.png", shots.region(browser, got[".disclaimer"]))

    assert got[".outcome-card"].get_attribute("data-outcome") in (*OUTCOMES, CANT_ASSESS)
    assert "framed" in got[".judged img"].get_attribute("alt")
    # The frame is the largest crop judged: a square of 60% of the shorter side (288 of 480 px) centred on the tap
    # (144, 288 px), so from 0 to 0.6 across and 0.3 to 0.9 down.
    left, top, right, bottom = _frame_box(got[".judged img"])
    assert left == pytest.approx(0.0, abs=0.03) and right == pytest.approx(0.6, abs=0.03)
    assert top == pytest.approx(0.3, abs=0.03) and bottom == pytest.approx(0.9, abs=0.03)
    scroll_width, inner_width = shots.page_widths(browser)
    assert scroll_width <= inner_width + OVERFLOW_TOLERANCE_PX, f"page is {scroll_width} px wide on a {inner_width}"


def test_several_photos_in_the_therapist_tab_one_unreadable(browser, app_url, artefacts, tmp_path):
    near = shots.skin_like_photo(tmp_path / "near.jpg", size=480)
    far = tmp_path / "far.jpg"
    far.write_text("Not a photo: a note saved with the wrong name.\n", encoding="utf-8")
    shots.set_viewport(browser, *shots.DESKTOP, mobile=False)
    shots.open_app(browser, app_url)
    shots.select_tab(browser, "Therapist")
    shots.upload_photo(browser, near)
    shots.tap_photo(browser, 0.3, 0.56)
    panel = shots.visible_panel(browser)
    [b for b in panel.find_elements("css selector", "button") if "More photos of the same area" in b.text][0].click()
    shots.upload_photo(browser, far, slot=1)

    got = shots.click_and_wait(browser, "Analyse", (".outcome-card", ".judged img", ".disclaimer"))
    shots.screenshot(browser, artefacts / "several-photos-desktop.png", shots.region(browser, got[".disclaimer"]))

    judged = [j.text for j in panel.find_elements("css selector", ".judged")]
    assert len(judged) == 2, judged
    assert judged[0].startswith("Photo 1:") and "framed area around the spot you tapped" in judged[0]
    assert judged[1].startswith("Photo 2:") and "doesn't look like a photo" in judged[1]  # and photo 1 answered
    assert "Error" not in _visible_text(browser)


def _preview_shown(driver) -> bool:
    """Whether the visible tab shows the uploaded photo's preview, loaded (it is served from the upload folder)."""
    return any("/gradio_api/file=" in src for src in shots.loaded_images(driver, shots.visible_panel(driver)))


def test_therapist_view_leads_with_the_decision(browser, app_server, app_url, photo, artefacts, tmp_path):
    from triage.app.layout import CHECKLIST

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    shots.set_viewport(browser, *shots.DESKTOP, mobile=False)
    shots.open_app(browser, app_url)
    shots.select_tab(browser, "Therapist")

    got = shots.upload_and_click(browser, photo, "Analyse", (".outcome-card", ".prob-panel", ".gradcam img"))
    card, panel = got[".outcome-card"], got[".prob-panel"]
    shots.screenshot(browser, artefacts / "therapist-desktop.png", shots.region(browser, panel, first=card))

    assert card.location["y"] < panel.location["y"], "the decision must come before the probabilities"
    rows = panel.find_elements("css selector", ".prob-row")
    assert [r.get_attribute("data-outcome") for r in rows] == list(OUTCOMES)
    # No headline class: the panel's first line is its title, and no class name is set in large type.
    assert panel.text.splitlines()[0].startswith("How closely the photo resembles")
    sizes = browser.execute_script(
        "const size = e => parseFloat(getComputedStyle(e).fontSize);"
        "return Array.from(arguments[0].querySelectorAll('*')).map(e => size(e) / size(arguments[0]));",
        panel,
    )
    assert max(sizes) <= 1.01, f"text in the probability panel is set larger than the body text: {max(sizes)}"
    decision = card.get_attribute("data-outcome")
    marked = [r.get_attribute("data-outcome") for r in rows if r.find_elements("css selector", ".prob-decision")]
    assert marked == [decision]
    values = {r.get_attribute("data-outcome"): float(r.find_element("css selector", ".prob-value").text) for r in rows}
    if max(values, key=values.get) != decision:
        assert panel.find_elements("css selector", ".prob-note"), "the panel does not say why the decision differs"
    assert shots.loaded_images(browser, got[".gradcam img"].find_element("xpath", "..")), "heatmap not shown"
    assert _preview_shown(browser)
    assert not files_left_after(app_server.temp_dir, EMPTY_WITHIN_S), "a file is left after Analyse"

    shots.visible_panel(browser).find_element("xpath", f".//label[contains(., '{CHECKLIST[2]}')]").click()
    [button] = [b for b in shots.visible_panel(browser).find_elements("tag name", "button") if "summary" in b.text]
    button.click()
    link = WebDriverWait(browser, shots.WAIT_S).until(
        lambda d: [a for a in d.find_elements("css selector", "a.summary-download") if a.is_displayed()]
    )[0]
    link.click()
    saved = WebDriverWait(browser, shots.WAIT_S).until(
        lambda _: [p for p in downloads.glob("*.html") if p.stat().st_size]
    )
    summary = saved[0].read_text(encoding="utf-8")
    assert "Consultation summary" in summary and CHECKLIST[2] in summary
    assert not files_left_after(app_server.temp_dir, EMPTY_WITHIN_S), "the summary left a file on the server"


def test_red_flag_questions_fit_a_phone_and_a_yes_leads_to_the_referral(browser, app_url, photo, artefacts):
    from selenium.webdriver.common.by import By

    from triage.core.red_flags import RED_FLAGS

    shots.set_viewport(browser, *shots.PHONE, mobile=True)
    shots.open_app(browser, app_url)
    shots.select_tab(browser, "Check a photo")
    panel = shots.visible_panel(browser)
    questions = [q for q in panel.find_elements(By.CSS_SELECTOR, ".red-flag") if q.is_displayed()]
    assert len(questions) == len(RED_FLAGS)
    for question, flag in zip(questions, RED_FLAGS, strict=True):
        assert flag.question in question.text
        box = question.rect
        assert box["x"] >= 0 and box["x"] + box["width"] <= shots.PHONE[0] + OVERFLOW_TOLERANCE_PX, box
    scroll_width, inner_width = shots.page_widths(browser)
    assert scroll_width <= inner_width + OVERFLOW_TOLERANCE_PX, f"page is {scroll_width} px wide on a {inner_width}"
    # "Yes" to the first question (a change), then the photo and the button, as a client would.
    yes = next(label for label in questions[0].find_elements(By.TAG_NAME, "label") if label.text.strip() == "Yes")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", yes)
    yes.click()
    got = shots.upload_and_click(browser, photo, "Check my photo", (".outcome-card",))
    shots.screenshot(browser, artefacts / "red-flag-yes-phone.png", shots.region(browser, got[".outcome-card"]))
    card = got[".outcome-card"]
    assert card.get_attribute("data-outcome") == "refer-to-doctor"
    assert card.find_element(By.CSS_SELECTOR, "h2").text.strip() == HEADLINES["refer-to-doctor"]
    assert RED_FLAGS[0].if_yes in card.text
