"""The running app (``serve.py`` on the tiny model, see conftest ``app_url``) through its documented API and page.

* ``/triage`` through ``gradio_client``: a usable photo gets all four probabilities, an unusable one a
  "can't assess" with reasons, a file that is not a photo a plain ``{"error": ...}`` sentence.
* The API example in docs/APP.md runs as written (only the URL and the photo's folder differ).
* The page works offline: nothing it or its stylesheets load comes from another host. What the browser
  actually requests is checked in ``test_browser.py``; the JS bundles are not grepped, because Gradio's
  ship dormant URLs of other sites (map tiles, the Hugging Face Spaces header) that this app never runs.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
import pytest
from conftest import REPO, add_grain
from gradio_client import Client, handle_file
from PIL import Image

from triage.core.outcomes import CANT_ASSESS, OUTCOMES

#: Keys every result carries (docs/APP.md: outcome, probabilities, reasons, quality, timings; and the urgency).
RESULT_KEYS = {"outcome", "probabilities", "reasons", "reason_codes", "quality", "ood_score", "model_version"}
RESULT_KEYS |= {"timings_ms", "urgency"}
#: What a technical error message looks like (a traceback, a code path, an exception name).
TECHNICAL = re.compile(r"Traceback|File \"|\.py\b|line \d+|Exception|Error\b|errno|0x[0-9a-fA-F]{4,}|[<>{}]")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    """A ``gradio_client`` connected to the running app."""
    return Client(app_url + "/", verbose=False)


def is_sentence(text: str) -> bool:
    """A plain sentence (or two) for a person: capital first, full stop last, several words, nothing technical."""
    text = text.strip()
    return (
        bool(text)
        and text[0].isupper()
        and text.endswith(".")
        and len(text.split()) >= 5
        and not TECHNICAL.search(text)
    )


def assert_well_formed(result: dict) -> None:
    """The shared shape of every ``/triage`` result (not an error)."""
    assert isinstance(result, dict) and "error" not in result, result
    assert RESULT_KEYS <= result.keys(), sorted(result)
    assert result["outcome"] in (*OUTCOMES, CANT_ASSESS)
    assert isinstance(result["reasons"], list) and all(isinstance(r, str) for r in result["reasons"])
    assert isinstance(result["quality"], dict) and result["quality"]
    assert result["model_version"] == "test-random"  # the tiny model served, not some other file
    assert all(isinstance(v, int | float) and v >= 0 for v in result["timings_ms"].values())


# -- the API -------------------------------------------------------------------------------------------


def test_a_usable_photo_gets_all_four_probabilities(client, make_photo, tmp_path):
    path = tmp_path / "spot.jpg"
    add_grain(make_photo(11, (320, 280))).save(path, "JPEG", quality=90)

    result = client.predict(handle_file(str(path)), api_name="/triage")

    assert_well_formed(result)
    assert result["outcome"] in OUTCOMES, result  # the model ran and gave one of the four outcomes
    probs = result["probabilities"]
    assert set(probs) == set(OUTCOMES)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert (result["quality"]["width"], result["quality"]["height"]) == (320, 280)  # our photo, decoded
    assert result["reason_codes"] == [] or result["outcome"] == "refer-to-doctor"


def test_an_unusable_photo_is_cant_assess_with_reasons(client, make_photo, tmp_path):
    path = tmp_path / "dark.jpg"
    dark = np.asarray(add_grain(make_photo(12, (320, 320)))).astype(np.float32) * 0.08
    Image.fromarray(dark.astype(np.uint8)).save(path, "JPEG", quality=90)

    result = client.predict(handle_file(str(path)), api_name="/triage")

    assert_well_formed(result)
    assert result["outcome"] == CANT_ASSESS
    assert result["probabilities"] is None  # no guess for a photo that cannot be assessed
    assert "too_dark" in result["reason_codes"]
    assert result["reasons"] and all(is_sentence(r) for r in result["reasons"]), result["reasons"]


def test_a_text_file_named_jpg_gets_a_plain_error(client, app_server, tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_text("This is a shopping list, not a photo.\nmilk\neggs\n", encoding="utf-8")
    log_before = app_server.log.stat().st_size

    result = client.predict(handle_file(str(path)), api_name="/triage")

    assert isinstance(result, dict) and set(result) == {"error"}, result
    assert isinstance(result["error"], str) and is_sentence(result["error"]), result["error"]
    app_server.assert_alive()
    # Nor does the server log a traceback for it: a bad file is an expected event, not a crash.
    with open(app_server.log, "rb") as fh:
        fh.seek(log_before)
        assert b"Traceback" not in fh.read()


def test_only_the_documented_endpoint_is_public(client):
    # The client and therapist buttons are private events: the one way in for programs is /triage.
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/triage"}


def test_the_documented_api_example_works_as_written(app_url, make_photo, tmp_path, monkeypatch):
    page = (REPO / "docs" / "APP.md").read_text(encoding="utf-8")
    api_section = page.split("\n## API\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", api_section, re.S).group(1)
    assert 'Client("http://127.0.0.1:7860/")' in code and 'handle_file("spot.jpg")' in code, code
    add_grain(make_photo(13, (300, 300))).save(tmp_path / "spot.jpg", "JPEG", quality=90)
    monkeypatch.chdir(tmp_path)  # "spot.jpg" as written, relative to where the reader runs it

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("http://127.0.0.1:7860/", app_url + "/"), "docs/APP.md", "exec"), {})

    # The client announces itself ("Loaded as API: ...") before the example prints the results: the whole
    # photo, the area around the point the example taps, then the whole photo with red-flag answers.
    whole, tapped, flagged = (ast.literal_eval(line) for line in out.getvalue().strip().splitlines()[-3:])
    assert flagged["outcome"] == "refer-to-doctor" and flagged["answers"] == {"changed": "yes", "eye": "no"}
    assert_well_formed(whole)
    assert set(whole["probabilities"]) == set(OUTCOMES) and "area" not in whole
    assert_well_formed(tapped)
    assert tapped["point"] == [0.42, 0.61] and len(tapped["area"]) == 4


# -- the page works offline ------------------------------------------------------------------------------

#: (tag, attribute) pairs that make a browser fetch something when the page loads.
LOADING_ATTRS = {
    ("script", "src"), ("link", "href"), ("img", "src"), ("img", "srcset"), ("source", "src"),
    ("source", "srcset"), ("iframe", "src"), ("embed", "src"), ("object", "data"), ("video", "src"),
    ("video", "poster"), ("audio", "src"), ("track", "src"), ("input", "src"), ("image", "href"),
}  # fmt: skip
CSS_REFS = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+(?:url\()?\s*['"]([^'"]+)""", re.I)
CHUNK_REFS = re.compile(r"""["'`](\.{1,2}/[\w./-]+\.(?:js|mjs|css))["'`]""")


class _PageRefs(HTMLParser):
    """Collects what an HTML page loads: URLs in loading attributes, inline CSS and inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.css: list[str] = []
        self.scripts: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (tag, name) in LOADING_ATTRS:
                # srcset: "url 1x, url 2x"
                self.urls += (
                    [part.split()[0] for part in value.split(",") if part.strip()] if "srcset" in name else [value]
                )
            if value and name == "style":
                self.css.append(value)
        self._in = tag if tag in ("style", "script") else None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.css.append(data)
        elif self._in == "script":
            self.scripts.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def external(url: str, base: str) -> bool:
    """Whether ``url`` (relative to ``base``) points at another host than loopback."""
    parts = urlsplit(urljoin(base, url.strip()))
    return parts.scheme not in ("data", "blob", "about", "") and parts.hostname not in LOOPBACK


def css_external_refs(css: str, base: str) -> list[str]:
    """``url(...)`` and ``@import`` targets in ``css`` that are on other hosts."""
    return [ref for m in CSS_REFS.finditer(css) if external(ref := m.group(1) or m.group(2), base)]


def test_page_and_its_styles_load_nothing_from_other_hosts(app_url):
    found: list[str] = []
    with httpx.Client(trust_env=False, timeout=30) as http:
        page_url = app_url + "/"
        html = http.get(page_url).text
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, "the page names Google Fonts"
        refs = _PageRefs()
        refs.feed(html)
        assert refs.urls, "the page loads no assets at all? the parser is broken"
        found += [f"page: {u}" for u in refs.urls if external(u, page_url)]
        found += [f"page style: {u}" for css in refs.css for u in css_external_refs(css, page_url)]

        # Gradio's config: extra stylesheets (a theme with Google Fonts lands here), custom head, CSS and JS.
        config_text = next((s for s in refs.scripts if "window.gradio_config" in s), None)
        assert config_text, "no window.gradio_config in the page"
        config = json.loads(re.search(r"window\.gradio_config\s*=\s*(\{.*\})\s*;", config_text, re.S).group(1))
        found += [f"config stylesheet: {u}" for u in config.get("stylesheets") or [] if external(u, page_url)]
        head = _PageRefs()
        head.feed(config.get("head") or "")
        found += [f"config head: {u}" for u in head.urls if external(u, page_url)]
        found += [f"custom css: {u}" for u in css_external_refs(config.get("css") or "", page_url)]
        assert not re.search(r"https?://", config.get("js") or ""), "custom JS names another site"

        # The theme's stylesheet, the web manifest's icons, and every stylesheet of the app's bundle.
        found += [f"theme.css: {u}" for u in css_external_refs(http.get(app_url + "/theme.css").text, page_url)]
        manifest = http.get(app_url + "/manifest.json")
        if manifest.status_code == 200:
            icons = [i.get("src", "") for i in manifest.json().get("icons", [])]
            found += [f"manifest icon: {u}" for u in icons if external(u, app_url + "/manifest.json")]
        todo = [urljoin(page_url, u) for u in refs.urls if u.endswith((".js", ".css"))]
        seen: set[str] = set()
        while todo:
            url = todo.pop()
            if url in seen or external(url, page_url):
                continue
            seen.add(url)
            body = http.get(url).text
            if url.endswith(".css"):
                found += [f"{urlsplit(url).path}: {u}" for u in css_external_refs(body, url)]
            else:  # follow the bundle's chunk graph (static and lazy imports, CSS included)
                todo += [urljoin(url, m) for m in CHUNK_REFS.findall(body)]
        css_files = [u for u in seen if u.endswith(".css")]
        assert len(css_files) >= 5, f"found only {len(css_files)} stylesheets: the crawl is broken"
    assert not found, "the page would fetch from other sites (it must work offline):\n" + "\n".join(found)
