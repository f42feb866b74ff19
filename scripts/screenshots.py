"""Take the README screenshots of the app with a headless Chromium, offline and on loopback only.

Usage:
    python scripts/screenshots.py [--model models/triage-mnv3s.pt] [--out docs/screenshots] [--photo spot.jpg]

Starts ``serve.py`` on 127.0.0.1 at a free port, then saves six PNGs (each kept under 300 KB):

* ``client-milia-like.png`` and ``client-refer.png``: the "Check a photo" answer (card, disclaimer and the
  answer's own page) on a 390 px wide phone screen, for a milia-like and a refer-to-doctor result;
* ``questions-phone.png``: the red-flag questions on the phone with "Yes" to the eye question, down to the answer's
  card, which then leads with "Get help now: call 999 or go to A&E" whatever the photo showed;
* ``tap-phone.png``: a generated photo with one spot tapped: the answer and the framed area that was judged;
* ``therapist.png``: the Therapist tab after "Analyse", from the decision down: the outcome card, the
  probability bars (no headline class) with what they mean, and the Grad-CAM heatmap;
* ``learn.png``: the Learn tab.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``) and
``selenium`` (the ``dev`` extra). The browser helpers here are shared with ``tests/test_browser.py``.
The photos are generated (pale bumps; an uneven dark patch), so no person's photo is in the repository. Before
the browser starts, the model itself is asked which generated photo (:data:`LOOKS`, several seeds each) gives
each answer, so the shots show the model's own answers for whatever model is served. ``--photo`` replaces the
milia-like one (used as it is).

When no generated photo gets refer-to-doctor from the model (the shipped model's out-of-distribution gate
declines every dark patch tried as "not like skin"), the refer-to-doctor shot is the milia-like photo with "Yes"
to the first red-flag question (a new mole or patch, or a change over weeks): that referral comes from the
client's answer, not from the photo, and its card says so. The script prints which route it took.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]

#: Where Debian puts the browser and its driver; TRIAGE_CHROMIUM / TRIAGE_CHROMEDRIVER override.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
PHONE = (390, 844)
DESKTOP = (1280, 900)
MAX_PNG_BYTES = 300_000
#: Seconds to wait for a page, a result or the app to start (the machine may be busy).
WAIT_S = 120.0


# -- the browser ------------------------------------------------------------------------------------


def find_browser() -> tuple[str, str] | None:
    """Paths of ``(chromium, chromedriver)``, or ``None`` when either cannot be found."""

    def first(env: str, candidates: tuple[str, ...], name: str) -> str | None:
        for path in (os.environ.get(env), *candidates, shutil.which(name)):
            if path and os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return None

    chromium = first("TRIAGE_CHROMIUM", CHROMIUM_CANDIDATES, "chromium")
    driver = first("TRIAGE_CHROMEDRIVER", CHROMEDRIVER_CANDIDATES, "chromedriver")
    return (chromium, driver) if chromium and driver else None


def browser_flags(profile_dir: Path) -> list[str]:
    """Headless Chromium that talks to nothing but loopback (we run as root in CI, hence --no-sandbox)."""
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",  # containers have a tiny /dev/shm
        "--hide-scrollbars",  # scrollbars would eat into the 390 px and show up in screenshots
        "--lang=en-GB",
        f"--user-data-dir={profile_dir}",
        # Every host name fails to resolve except loopback: the page must work offline, and a request to
        # another site cannot leave the machine even if the page tried one.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
        "--proxy-server=direct://",
        "--proxy-bypass-list=*",
    ]


def make_driver(chromium: str, chromedriver: str, profile_dir: Path):
    """Start headless Chromium through its chromedriver (given explicitly: Selenium Manager never runs).

    Network requests are recorded (see :func:`requested_urls`).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in browser_flags(profile_dir):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=opts)
    driver.set_page_load_timeout(WAIT_S)
    requested_urls(driver)  # drop what the browser's own start-up page asked for
    return driver


def set_viewport(driver, width: int, height: int, mobile: bool) -> None:
    """Emulate a screen of ``width`` x ``height`` CSS px at 1 device pixel per CSS px (small screenshots)."""
    driver.set_window_size(width, height)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": mobile})


def open_app(driver, url: str) -> None:
    """Load the app and wait until Gradio has rendered its tabs."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(ec.presence_of_element_located((By.CSS_SELECTOR, "button[role='tab']")))


def select_tab(driver, name: str) -> None:
    """Click the tab whose visible label is ``name``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def tab(d):
        found = [t for t in d.find_elements(By.CSS_SELECTOR, "button[role='tab']") if t.text.strip() == name]
        return found[0] if found else False

    WebDriverWait(driver, WAIT_S).until(tab).click()
    WebDriverWait(driver, WAIT_S).until(lambda d: visible_panel(d) is not None)


def visible_panel(driver):
    """The tab panel now shown (Gradio keeps the others in the page, hidden)."""
    from selenium.webdriver.common.by import By

    panels = [p for p in driver.find_elements(By.CSS_SELECTOR, "[role='tabpanel']") if p.is_displayed()]
    return panels[0] if panels else None


def upload_photo(driver, photo: Path, slot: int = 0) -> None:
    """In the visible tab: put ``photo`` into the ``slot``-th photo input (0: the first) and wait for its preview."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    panel = visible_panel(driver)
    assert panel is not None, "no visible tab panel"
    before = len(_previews(panel))
    panel.find_elements(By.CSS_SELECTOR, "input[type='file']")[slot].send_keys(str(Path(photo).resolve()))
    # The upload is done when one more preview <img> appears in this panel and has finished loading (or failed
    # to: a file that is not a photo). The server deletes the uploaded file once it is checked, so the button is
    # pressed only after the browser holds its own copy, as a person does who sees the preview first.
    WebDriverWait(driver, WAIT_S).until(
        lambda d: (
            len(_previews(panel)) > before
            and d.execute_script("return Array.from(arguments[0]).every(i => i.complete);", _previews(panel))
        )
    )


def _previews(panel) -> list:
    from selenium.webdriver.common.by import By

    return [i for i in panel.find_elements(By.CSS_SELECTOR, ".image-frame img") if i.is_displayed()]


def tap_photo(driver, fx: float, fy: float, slot: int = 0) -> None:
    """Tap (click) the ``slot``-th photo preview of the visible tab at ``fx``, ``fy`` of its width and height.

    The preview is letterboxed inside its box, so the point is computed on the picture as drawn; waits until
    the page says the spot is marked.
    """
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    panel = visible_panel(driver)
    img = _previews(panel)[slot]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
    dx, dy = driver.execute_script(
        "const i = arguments[0], r = i.getBoundingClientRect();"
        "const s = Math.min(r.width / i.naturalWidth, r.height / i.naturalHeight, 1);"
        "const w = i.naturalWidth * s, h = i.naturalHeight * s;"
        "return [arguments[1] * w - w / 2, arguments[2] * h - h / 2];",  # offsets from the element's centre
        img,
        fx,
        fy,
    )
    ActionChains(driver).move_to_element_with_offset(img, round(dx), round(dy)).click().perform()
    WebDriverWait(driver, WAIT_S).until(lambda d: "Spot marked" in panel.text)


def click_and_wait(driver, button: str, wait_css: tuple[str, ...]) -> dict:
    """In the visible tab: click ``button``, wait for every selector in ``wait_css``.

    Returns:
        ``{selector: element}`` for the first visible match of each selector.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    panel = visible_panel(driver)
    buttons = [b for b in panel.find_elements(By.TAG_NAME, "button") if b.text.strip() == button]
    assert buttons, f"no button {button!r} in the visible tab"
    buttons[0].click()

    def all_there(_):
        found = {}
        for css in wait_css:
            shown = [e for e in panel.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
            if not shown:
                return False
            found[css] = shown[0]
        return found

    return WebDriverWait(driver, WAIT_S).until(all_there)


def upload_and_click(driver, photo: Path, button: str, wait_css: tuple[str, ...]) -> dict:
    """In the visible tab: upload ``photo``, click ``button``, wait for every selector in ``wait_css``.

    Returns:
        ``{selector: element}`` for the first visible match of each selector.
    """
    upload_photo(driver, photo)
    return click_and_wait(driver, button, wait_css)


def loaded_images(driver, element) -> list[str]:
    """``src`` of every displayed ``<img>`` under ``element`` that has finished loading (and has pixels)."""
    return driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll('img'))"
        "  .filter(i => i.offsetParent !== null && i.complete && i.naturalWidth > 0).map(i => i.src);",
        element,
    )


def page_widths(driver) -> tuple[int, int]:
    """``(document scroll width, window inner width)`` in CSS px."""
    return tuple(driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth];"))


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (from Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def is_local(url: str) -> bool:
    """True for loopback http(s)/ws(s) URLs and for URLs that never touch the network (data:, blob:, chrome:...)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome", "chrome-untrusted", "chrome-extension", "devtools"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in ("127.0.0.1", "localhost", "::1")


def screenshot(driver, path: Path, clip: tuple[float, float, float, float] | None = None) -> Path:
    """Save a PNG of the viewport, or of the page region ``clip`` = ``(x, y, width, height)`` in CSS px.

    The PNG has 256 colours (text and the page's flat colours look the same, at about a third of the bytes
    of full colour) and is scaled down, only if needed, to stay under :data:`MAX_PNG_BYTES`.
    """
    import base64

    from PIL import Image

    params: dict = {"format": "png"}
    if clip:
        x, y, w, h = clip
        params |= {"clip": {"x": x, "y": y, "width": w, "height": h, "scale": 1}, "captureBeyondViewport": True}
    data = base64.b64decode(driver.execute_cdp_cmd("Page.captureScreenshot", params)["data"])
    image = Image.open(io.BytesIO(data)).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        buf = io.BytesIO()
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
        if buf.tell() <= MAX_PNG_BYTES:
            break
        # Still too big: fewer pixels (keeps the aspect ratio).
        image = image.resize((int(image.width * 0.85), int(image.height * 0.85)), Image.Resampling.LANCZOS)
    path.write_bytes(buf.getvalue())
    return path


def region(driver, last, first=None, pad: int = 12) -> tuple[float, float, float, float]:
    """Full-width page region down to the bottom of element ``last``, from the top of ``first`` or of the page."""
    top, bottom, width = driver.execute_script(
        "const a = arguments[0] ? arguments[0].getBoundingClientRect().top + window.scrollY : 0;"
        "const b = arguments[1].getBoundingClientRect().bottom + window.scrollY;"
        "return [a, b, document.documentElement.clientWidth];",
        first,
        last,
    )
    top = max(0.0, top - pad) if first is not None else 0.0
    return 0.0, top, float(width), bottom + pad - top


def block_labelled(driver, panel, text: str):
    """The Gradio component block in ``panel`` whose label contains ``text`` (``None`` when not shown)."""
    return driver.execute_script(
        "const walk = document.createTreeWalker(arguments[0], NodeFilter.SHOW_TEXT);"
        "for (let n = walk.nextNode(); n; n = walk.nextNode()) {"
        "  const el = n.parentElement;"
        "  if (n.textContent.includes(arguments[1]) && el.offsetParent) return el.closest('.block');"
        "}"
        "return null;",
        panel,
        text,
    )


# -- the app ------------------------------------------------------------------------------------------


@contextmanager
def serve(model: Path, log: Path) -> Iterator[str]:
    """Run ``serve.py --model <model>`` on 127.0.0.1 at a free port; yield its URL, stop it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "TRIAGE_USER", "TRIAGE_PASSWORD"))}
    env |= {"GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    env["GRADIO_TEMP_DIR"] = str(log.parent / "gradio")  # the uploaded photo goes away with our temporary folder
    cmd = [sys.executable, str(REPO / "serve.py"), "--host", "127.0.0.1", "--port", str(port), "--model", str(model)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 3 * WAIT_S
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve.py did not start:\n{log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "/", timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- a stand-in photo --------------------------------------------------------------------------------


#: The generated looks :func:`photo_for` tries in turn (keyword arguments of :func:`skin_like_photo`): the first
#: stand-in; a paler, grainier skin, which the shipped model's out-of-distribution gate declines less often; the
#: same skin with finer unevenness and more, smaller bumps, so that a tap's framed area (60% of the photo's side,
#: enlarged for the model) looks like a whole photo of the second look.
LOOKS: tuple[dict, ...] = (
    {},
    {"skin": (232, 196, 176), "grain": 6.0, "shading": 14.0},
    {
        "skin": (232, 196, 176),
        "grain": 6.0,
        "shading": 14.0,
        "blotches": 10,
        "bumps": 12,
        "bump_radius": (0.009, 0.018),
        "spread": (0.1, 0.9),
    },
)


def skin_like_photo(
    path: Path,
    size: int = 480,
    seed: int = 7,
    skin: tuple[int, int, int] = (214, 168, 142),
    grain: float = 4.0,
    shading: float = 10.0,
    blotches: int = 6,
    bumps: int = 5,
    bump_radius: tuple[float, float] = (0.015, 0.03),
    spread: tuple[float, float] = (0.25, 0.75),
) -> Path:
    """Write a generated close-up of skin with a few small pale bumps (JPEG); sharp enough to pass the checks.

    Args:
        skin: the mean skin colour (RGB); ``grain``: the pixel noise; ``shading``: how uneven the skin is, in
            ``blotches`` x ``blotches`` smooth patches.
        bumps: how many pale bumps, each of a radius within ``bump_radius`` and a centre within ``spread``
            (fractions of the side).
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    base = np.array(skin, dtype=np.float32)
    shade = np.asarray(
        Image.fromarray(rng.normal(0, 1, (blotches, blotches)).astype(np.float32), mode="F").resize(
            (size, size), Image.BICUBIC
        )
    )
    arr = base[None, None, :] + shading * shade[:, :, None] + rng.normal(0, grain, (size, size))[:, :, None]
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")
    for _ in range(bumps):
        cx, cy, r = rng.uniform(*spread) * size, rng.uniform(*spread) * size, rng.uniform(*bump_radius) * size
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).ellipse((cx - r, cy - r, cx + r, cy + r), fill=220)
        mask = mask.filter(ImageFilter.GaussianBlur(r / 3))
        image = Image.composite(Image.new("RGB", (size, size), (246, 238, 226)), image, mask)
    image.save(path, "JPEG", quality=92)
    return path


def dark_patch_photo(path: Path, size: int = 480, seed: int = 1, **look) -> Path:
    """Write a generated close-up of skin with one uneven, irregular dark patch (JPEG), a stand-in for a mole.

    ``look`` goes to :func:`skin_like_photo`, which draws the skin around the patch.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    image = Image.open(skin_like_photo(path, size, seed + 100, **look)).convert("RGB")
    shades = ((92, 58, 40), (60, 36, 30), (140, 90, 70))
    for k in range(9):  # overlapping blobs of several browns: a ragged edge and more than one colour
        cx, cy = size / 2 + rng.normal(0, size * 0.06, 2)
        r = rng.uniform(0.05, 0.11) * size
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).ellipse((cx - r, cy - r * rng.uniform(0.6, 1.2), cx + r, cy + r), fill=235)
        mask = mask.filter(ImageFilter.GaussianBlur(r / 6))
        image = Image.composite(Image.new("RGB", (size, size), shades[k % len(shades)]), image, mask)
    arr = np.asarray(image).astype(np.float32) + rng.normal(0, 4.0, (size, size))[:, :, None]
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=92)
    return path


def palest_spot(path: Path) -> tuple[float, float]:
    """Where the generated photo's palest bump is, as fractions of width and height (where the screenshot taps).

    Paleness is measured against the surrounding skin (a fine blur minus a broad one), so a bright patch of
    uneven skin is not taken for a bump.
    """
    import numpy as np
    from PIL import Image, ImageFilter

    image = Image.open(path).convert("L")
    fine = np.asarray(image.filter(ImageFilter.GaussianBlur(3)), dtype=np.float32)
    broad = np.asarray(image.filter(ImageFilter.GaussianBlur(24)), dtype=np.float32)
    y, x = np.unravel_index(np.argmax(fine - broad), fine.shape)
    return (x + 0.5) / image.width, (y + 0.5) / image.height


def photo_for(outcome: str, model: Path, folder: Path, tries: int = 20, tapped: bool = False) -> Path:
    """A generated photo that ``model`` answers ``outcome`` for (pale bumps for milia-like, else a dark patch).

    Tries ``tries`` seeds of each look in :data:`LOOKS`, in turn. With ``tapped``, the answer for a tap on its
    palest spot (:func:`palest_spot`) is the one that must match. A photo whose refer-to-doctor probability
    rounds to the referral threshold is passed over: the therapist's bars show two decimals, and 0.08 beside
    "the threshold is 0.08" would read as a tie.

    Raises:
        RuntimeError: none of the generated photos gets that answer.
    """
    import numpy as np

    from triage.core.outcomes import OUTCOMES, REFER
    from triage.inference.engine import Triage

    make = skin_like_photo if outcome == "milia-like" else dark_patch_photo
    triage = Triage.load(model)
    for k, look in enumerate(LOOKS):
        for seed in range(tries):
            path = make(folder / f"{outcome}{'-tap' if tapped else ''}-look{k}-{seed}.jpg", seed=seed, **look)
            result = triage.predict_path(path, point=palest_spot(path) if tapped else None)
            if result.outcome != outcome:
                continue
            probs = np.array([result.probabilities[o] for o in OUTCOMES])
            if round(float(probs[OUTCOMES.index(REFER)]), 2) != round(float(triage.thresholds.refer_for(probs)[0]), 2):
                print(f"{outcome}{' (tapped)' if tapped else ''}: look {k}, seed {seed}", file=sys.stderr)
                return path
    raise RuntimeError(f"none of {tries * len(LOOKS)} generated photos got the answer {outcome!r} from {model}")


def answer_question(driver, index: int, answer: str = "Yes") -> None:
    """In the visible tab: choose ``answer`` ("Yes", "No" or "Not sure") for the ``index``-th red-flag question."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    panel = visible_panel(driver)
    question = [q for q in panel.find_elements(By.CSS_SELECTOR, ".red-flag") if q.is_displayed()][index]
    label = next(lab for lab in question.find_elements(By.TAG_NAME, "label") if lab.text.strip() == answer)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", label)
    label.click()
    WebDriverWait(driver, WAIT_S).until(lambda _: label.find_element(By.TAG_NAME, "input").is_selected())


def answer_region(driver, card) -> tuple[float, float, float, float]:
    """From the outcome card down to the end of the answer's own page (the first rule below it, if any)."""
    end = driver.execute_script(
        "const card = arguments[0];"
        "const title = [...document.querySelectorAll('h1')].find("
        "  h => h.offsetParent && h.textContent.startsWith('Result') && "
        "  (card.compareDocumentPosition(h) & Node.DOCUMENT_POSITION_FOLLOWING));"
        "if (!title) return null;"
        "const prose = title.closest('.prose') || title.parentElement;"
        "return prose.querySelector('hr') || prose;",
        card,
    )
    return region(driver, end if end is not None else card, first=card)


# -- the screenshots -----------------------------------------------------------------------------------


def client_answer(driver, url: str, photo: Path, outcome: str, png: Path, flag_yes: bool = False) -> Path:
    """On the "Check a photo" tab: upload ``photo``, press the button, save the answer as a client reads it.

    Args:
        outcome: the answer expected (a warning is printed when the card shows another).
        flag_yes: first answer "Yes" to the first red-flag question (a new mole or patch, or a change over weeks).
    """
    open_app(driver, url)
    select_tab(driver, "Check a photo")
    if flag_yes:
        answer_question(driver, 0, "Yes")
    upload_photo(driver, photo)
    got = click_and_wait(driver, "Check my photo", (".outcome-card", ".disclaimer"))
    shown = got[".outcome-card"].get_attribute("data-outcome")
    if shown != outcome:
        print(f"warning: {png.name} shows {shown!r}, not {outcome!r}", file=sys.stderr)
    # The answer as a client reads it: card, disclaimer and the answer's own page.
    return screenshot(driver, png, answer_region(driver, got[".outcome-card"]))


def eye_answer(driver, url: str, photo: Path, png: Path) -> Path:
    """The questions with "Yes" to the eye question, down to the card it gives (999 first, whatever the photo)."""
    from selenium.webdriver.common.by import By

    from triage.core.red_flags import RED_FLAGS

    open_app(driver, url)
    select_tab(driver, "Check a photo")
    answer_question(driver, [f.key for f in RED_FLAGS].index("eye"), "Yes")
    upload_photo(driver, photo)
    intro = visible_panel(driver).find_element(By.CSS_SELECTOR, ".questions-intro")
    got = click_and_wait(driver, "Check my photo", (".outcome-card", ".disclaimer"))
    card = got[".outcome-card"]
    if card.get_attribute("data-urgency") != "emergency":
        print(
            f"warning: {png.name} shows urgency {card.get_attribute('data-urgency')!r}, not 'emergency'",
            file=sys.stderr,
        )
    return screenshot(driver, png, region(driver, card, first=intro))


def take_screenshots(url: str, photos: dict[str, Path], out: Path, profile_dir: Path) -> list[Path]:
    """Save the client answers and questions (phone), therapist and Learn screenshots of the app at ``url``.

    Args:
        photos: ``{"milia-like": path}``, the client's and the therapist's photo; an optional
            ``"refer-to-doctor"`` photo that the model itself refers (without one, the refer shot is the
            milia-like photo with "Yes" to the first red-flag question); an optional ``"tap"`` photo, the one
            tapped (on its palest spot) for ``tap-phone.png``.
    """
    found = find_browser()
    if found is None:
        raise RuntimeError("chromium / chromedriver not found: apt-get install -y chromium chromium-driver")
    driver = make_driver(*found, profile_dir)
    saved = []
    try:
        set_viewport(driver, *PHONE, mobile=True)
        saved.append(client_answer(driver, url, photos["milia-like"], "milia-like", out / "client-milia-like.png"))
        refer = photos.get("refer-to-doctor")
        saved.append(
            client_answer(
                driver, url, refer or photos["milia-like"], "refer-to-doctor", out / "client-refer.png", refer is None
            )
        )
        photo = photos["milia-like"]
        saved.append(eye_answer(driver, url, photo, out / "questions-phone.png"))

        # Tap the spot: a fresh page, the photo, one tap, then the answer with the framed area it judged.
        open_app(driver, url)
        select_tab(driver, "Check a photo")
        tapped = photos.get("tap", photo)
        upload_photo(driver, tapped)
        tap_photo(driver, *palest_spot(tapped))
        got = click_and_wait(driver, "Check my photo", (".outcome-card", ".judged img", ".disclaimer"))
        saved.append(screenshot(driver, out / "tap-phone.png", region(driver, got[".disclaimer"])))

        set_viewport(driver, *DESKTOP, mobile=False)
        open_app(driver, url)
        select_tab(driver, "Therapist")
        got = upload_and_click(driver, photo, "Analyse", (".outcome-card", ".prob-panel"))
        panel = visible_panel(driver)
        # The heatmap arrives with the card only when the model ran (not for "can't assess"): give it a moment.
        heatmap = None
        for _ in range(20):
            heatmap = block_labelled(driver, panel, "Where the model looked")
            if heatmap is not None and loaded_images(driver, heatmap):
                break
            time.sleep(0.25)
        last = heatmap if heatmap is not None else got[".prob-panel"]
        # From the decision down: the card first, then the probabilities and the heatmap.
        saved.append(screenshot(driver, out / "therapist.png", region(driver, last, first=got[".outcome-card"])))

        open_app(driver, url)
        select_tab(driver, "Learn")
        saved.append(screenshot(driver, out / "learn.png"))
        outside = [u for u in requested_urls(driver) if not is_local(u)]
        if outside:
            print(f"warning: the page asked for other sites: {outside}", file=sys.stderr)
    finally:
        driver.quit()
    return saved


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the app, take the screenshots."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "models" / "triage-mnv3s.pt", help="checkpoint to serve")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="folder for the PNGs")
    p.add_argument("--photo", type=Path, default=None, help="a milia-like close-up (default: a generated one)")
    args = p.parse_args(argv)
    if args.photo is not None and not args.photo.is_file():
        p.error(f"no such photo: {args.photo}")
    with tempfile.TemporaryDirectory(prefix="triage-shots-") as tmp:
        tmp_dir = Path(tmp)
        try:
            photos = {"milia-like": args.photo or photo_for("milia-like", args.model, tmp_dir)}
            try:
                photos["refer-to-doctor"] = photo_for("refer-to-doctor", args.model, tmp_dir)
            except RuntimeError as err:
                print(f"warning: {err}; the refer shot answers Yes to the first question instead", file=sys.stderr)
            try:  # a photo whose tapped spot gets a milia-like answer; else the milia-like photo, tapped
                photos["tap"] = photo_for("milia-like", args.model, tmp_dir, tapped=True)
            except RuntimeError as err:
                print(f"warning: {err} for a tap; tapping the milia-like photo", file=sys.stderr)
            with serve(args.model, tmp_dir / "serve.log") as url:
                paths = take_screenshots(url, photos, args.out, tmp_dir / "profile")
        except RuntimeError as err:
            print(f"screenshots.py: {err}", file=sys.stderr)
            return 2
    for path in paths:
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
