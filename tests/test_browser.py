"""The real dashboard in headless Chromium: every page opens without an exception, and a click trains."""
import pytest

from robust_core.store import ModelStore

from .browser import PAGE_PATHS, browser_page, chromium_available, dashboard, open_page, page_errors, wait_until_idle

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")


def test_every_page_opens_and_the_train_button_trains(isolated_store, tiny_result, tmp_path):
    ModelStore(isolated_store).save(tiny_result, name="browser model")
    with dashboard() as url, browser_page(height=1200) as page:
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
    assert len(ModelStore(isolated_store).list()) == 2
