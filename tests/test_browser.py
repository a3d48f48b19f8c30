"""The real dashboard in headless Chromium: every page opens without an exception, and a click trains."""
import pytest

from robust_core.store import ModelStore

from .browser import (
    PAGE_PATHS,
    browser_page,
    chromium_available,
    dashboard,
    drag_slider,
    open_page,
    page_errors,
    wait_until_idle,
)

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")


def test_every_page_opens_and_the_train_button_trains(isolated_store, tiny_result, tmp_path):
    ModelStore(isolated_store).save(tiny_result, name="browser model")
    # In lecture mode, as a room gets it: the student's model is the student's (in single-user mode the one user's
    # models are the lab owner's, see robust_core.access.model_owner).
    with dashboard(env={"ROBUST_LECTURE_MODE": "1"}) as url, browser_page(height=1200) as page:
        # A fresh server whose first visitor opens a page by its URL still gets app.py's sidebar.
        open_page(page, url, "Models")
        assert "Dataset" in page.locator('[data-testid="stSidebar"]').inner_text()
        for name in PAGE_PATHS:
            open_page(page, url, name)
            assert page_errors(page) == [], name
            assert page.locator('[data-testid="stMain"] h1').first.inner_text().strip(), name
            page.screenshot(path=str(tmp_path / f"{name}.png"))
        assert "browser model" in page.locator('[data-testid="stDataFrame"]').inner_text() or \
            page.get_by_text("browser model").count() > 0

        open_page(page, url, "Train")
        # 1,000 images for two epochs (the stored model has one): pick them, then click Train.
        page.get_by_label("Epochs").fill("2")
        page.get_by_label("Epochs").press("Enter")
        wait_until_idle(page)
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Training images").click()
        page.get_by_role("option", name="1000", exact=True).click()
        wait_until_idle(page)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("saved to the store").wait_for(timeout=120_000)
        wait_until_idle(page)
        assert page_errors(page) == []
        page.screenshot(path=str(tmp_path / "trained.png"))
        # The browser keeps its visitor secret in a cookie; the trained model records its public id; a reload (a
        # new session) reads the cookie instead of making a new secret, so the student still owns the model.
        from lab_pages._audience import VISITOR_COOKIE
        from robust_core.access import visitor_id

        secret = {c["name"]: c["value"] for c in page.context.cookies()}[VISITOR_COOKIE]
        page.reload()
        wait_until_idle(page)
        assert {c["name"]: c["value"] for c in page.context.cookies()}[VISITOR_COOKIE] == secret
    entries = ModelStore(isolated_store).list()
    assert len(entries) == 2 and entries[0].meta["owner"] == visitor_id(secret)


def test_the_eps_slider_moves_curve_title_and_gallery_in_the_browser(isolated_store, tiny_result):
    """The lecture moment: dragging Plotly's slider updates the figure with no server round trip."""
    import torch

    from robust_core.evaluation import EvalKey, EvaluationCache

    store = ModelStore(isolated_store)
    entry = store.save(tiny_result, name="slider model")
    # Set-up only: per-image minimal eps for the page's default view (PGD-40, 500 images), so the
    # test exercises the browser, not the attack (covered elsewhere). The gallery's attacks run for real.
    params = (("eps_max", 0.4), ("restarts", 1), ("steps", 40))
    EvaluationCache(store).put(EvalKey(entry.model_id, "pgd", params, 500, 0), torch.linspace(0, 0.5, 500))
    with dashboard() as url, browser_page(height=1600) as page:
        open_page(page, url, "Attack", timeout_s=240)  # the gallery is crafted on first view
        assert page_errors(page) == []
        title = page.locator(".gtitle").first
        assert title.text_content().startswith("ε = 0.000")
        before = page.locator("image").first.get_attribute("href")
        drag_slider(page, 0.5)
        after_title = title.text_content()
        assert not after_title.startswith("ε = 0.000") and "slider model" in after_title
        # Half-way along the 0-0.4 rail is eps ~ 0.2; on the uniform 0-0.5 table ~60% of images need more.
        import re

        accuracy = float(re.search(r"slider model: ([0-9.]+)%", after_title).group(1))
        assert 50 <= accuracy <= 70, after_title
        assert page.locator("image").first.get_attribute("href") != before
        assert page.locator('[data-testid="stStatusWidget"]').count() == 0  # no rerun was triggered


def test_the_dashboard_calls_nothing_outside_this_machine(isolated_store, tiny_result, tmp_path):
    """Neither the browser nor the server reaches for the internet (usage statistics,
    the headless start's external-IP lookup), started as a user starts it (the address from .streamlit/config.toml)."""
    from urllib.parse import urlparse

    ModelStore(isolated_store).save(tiny_result, name="offline model")
    network_log = tmp_path / "server-network.log"
    with dashboard(address=None, network_log=network_log) as url, browser_page(1280, 720) as page:
        hosts = []
        page.on("request", lambda request: hosts.append(urlparse(request.url).hostname))
        open_page(page, url, "Models")  # a direct link to a page, as a student would open it
        open_page(page, url, "Attack")
        page.wait_for_timeout(1500)
        assert page.get_by_text("Deploy", exact=True).count() == 0  # no developer toolbar in front of a room
        # "Copy link to this view": the address, with the page's state in it.
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        page.frame_locator("iframe").first.locator("#copy").click()
        page.wait_for_timeout(500)
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == page.url and "/attack?" in copied and "models=" in copied and "attack=pgd" in copied
    outside = {h for h in hosts if h not in ("127.0.0.1", "localhost", None)}
    assert hosts and outside == set(), outside
    # The server's own lookups and connections (its audit hook's log): loopback only, and none to a host name.
    assert network_log.exists()  # the hook was installed (it opens its log first)
    used = network_log.read_text().split("\n")
    local = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "", "None")
    server_outside = {line for line in used if line and line.split(" ", 1)[1] not in local}
    assert server_outside == set(), server_outside


def test_class_visualization_canvas_toolbar_clears_the_radio_and_play_never_blanks_the_image(
        isolated_store, tiny_result):
    """While ▶ play runs, the morph's image is on screen at every sample; the canvas's
    hover toolbar sits in its own room, not over the "Start from" options."""
    ModelStore(isolated_store).save(tiny_result, name="morph model")
    with dashboard() as url, browser_page(1280, 720) as page:
        open_page(page, url, "Class Visualization")
        canvas = page.locator("canvas").first.bounding_box()
        page.mouse.move(canvas["x"] + 100, canvas["y"] + 100)
        page.wait_for_timeout(800)
        toolbar = page.locator(".dc-toolbar").first.bounding_box()
        radio = page.get_by_text("Black image").bounding_box()
        assert toolbar["y"] >= radio["y"] + radio["height"], (toolbar, radio)
        page.get_by_text("A test image").click()
        wait_until_idle(page)
        page.get_by_role("button", name="Morph", exact=True).click()
        page.wait_for_timeout(500)
        wait_until_idle(page, 120)
        assert page_errors(page) == []
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        page.wait_for_function("() => { const im = document.querySelector('.js-plotly-plot image');"
                               " return im && (im.getAttribute('href') || im.getAttribute('xlink:href') || '')"
                               ".length > 100 }")
        page.locator(".updatemenu-button").first.click()
        samples = []
        for _ in range(25):
            samples.append(page.evaluate("""() => { const im = document.querySelector('.js-plotly-plot image');
                return im ? (im.getAttribute('href') || im.getAttribute('xlink:href') || '').length : 0 }"""))
            page.wait_for_timeout(40)
        assert min(samples) > 100, samples  # a data URI at every sample: never an empty pane
