"""Every lecture path opens on what its card promises, inside the first 720 px of a 1280x720 projector, in
the normal and the projector layout, and no visible text runs out of its box."""
import tomllib
from urllib.parse import urlencode

import pytest

from .browser import REPO, browser_page, chromium_available, dashboard, page_errors, wait_until_idle

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")

SCREEN = 720  # px: a projector's height
# What each kind of path promises: (CSS selector, text it must contain or None), in the order it must show.
PROMISES = {
    "curves": [('[data-testid="stPlotlyChart"]', None)],
    "comparison": [('[data-testid="stAlert"]', "Gradient masking"), ('[data-testid="stPlotlyChart"]', None)],
    "morph": [('[data-testid="stPlotlyChart"]', None)],
    "maps": [('[data-testid="stPlotlyChart"]', None)],
    "calibration": [('[data-testid="stHeading"]', "calibration"), ('[data-testid="stDataFrame"]', None)],
}
# Visible text boxes whose content must fit their width (labels, captions, paragraphs, metric values).
OVERFLOW_JS = """() => [...document.querySelectorAll(
    '[data-testid="stMain"] [data-testid="stWidgetLabel"] p, [data-testid="stMain"] [data-testid="stCaptionContainer"],'
    + '[data-testid="stMain"] [data-testid="stMarkdownContainer"] p,'
    + ' [data-testid="stMain"] [data-testid="stMetricValue"],'
    + '[data-testid="stMain"] [data-testid="stMetricLabel"] p')]
  .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.bottom > 0 && r.top < 720; })
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => e.innerText.slice(0, 60))"""


def lecture_paths():
    return [(p.stem, tomllib.loads(p.read_text())) for p in sorted((REPO / "assets" / "lectures").glob("*.toml"))]


def box(page, selector, text):
    """The first matching element's box once it shows. Asked again when it was replaced between showing and being
    measured (a rerun redraws the chart when the gallery, crafted after the page shows, arrives)."""
    items = page.locator(selector)
    if text is not None:
        items = items.filter(has_text=text)
    for _ in range(20):
        items.first.wait_for(state="visible", timeout=120_000)
        found = items.first.bounding_box()
        if found is not None:
            return found
        page.wait_for_timeout(250)
    return None


def test_every_lecture_path_opens_on_its_promise_on_the_first_screen(tmp_path):
    env = {"ROBUST_STORE_DIR": str(tmp_path / "store"), "ROBUST_SHIPPED_MODELS": "1"}
    failures = []
    with dashboard(env=env, timeout_s=120) as url, browser_page(1280, SCREEN) as page:
        for query in ("", "?present=1"):
            page.goto(url + query)
            wait_until_idle(page, 120)
            cards = page.locator('[class*="st-key-lecture_card_"]')
            assert cards.count() == len(lecture_paths())
            for i in range(cards.count()):
                card = cards.nth(i).bounding_box()
                if card["y"] + card["height"] > SCREEN:
                    failures.append(f"home{query}: card {i} ends at y = {card['y'] + card['height']:.0f}")
            page.screenshot(path=str(tmp_path / f"home{query.replace('?', '_')}.png"))
        for mode in ("normal", "projector"):
            for name, path in lecture_paths():
                params = dict(path["params"], **({"present": "1"} if mode == "projector" else {}))
                page.goto(f"{url}/{path['page']}?{urlencode(params)}")
                wait_until_idle(page, 180)
                assert not page_errors(page), (name, mode, page_errors(page))
                page.screenshot(path=str(tmp_path / f"{name}_{mode}.png"))
                for selector, text in PROMISES[path["params"]["focus"]]:
                    found = box(page, selector, text)
                    assert found is not None, (name, mode, selector, text)
                    bottom = found["y"] + found["height"]
                    # A figure or a table may be taller than what is left (the saliency grid grows with its rows):
                    # then its first two thirds must show; a short one must show whole.
                    limit = SCREEN if found["height"] < SCREEN / 2 else found["y"] + 2 * SCREEN / 3
                    if found["y"] < 0 or found["y"] > SCREEN * 0.6 or (bottom > SCREEN and bottom > limit):
                        failures.append(f"{name} ({mode}): {selector} {text or ''} at y {found['y']:.0f}-{bottom:.0f}")
                if overflowing := page.evaluate(OVERFLOW_JS):
                    failures.append(f"{name} ({mode}): text runs out of its box: {overflowing}")
    assert not failures, "\n".join(failures)
