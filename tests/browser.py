"""Headless Chromium helpers: start the dashboard, open pages, take screenshots.

Used by the browser tests and, as a command, to refresh the README's screenshots:

    python -m tests.browser --out assets/screenshots

Drives Debian's /usr/bin/chromium through Playwright's ``executable_path`` (no browser download).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# Page name in the URL for each page of app.py.
PAGE_PATHS = {"Home": "", "Train": "train", "Attack": "attack", "Saliency": "saliency",
              "Class Visualization": "classviz", "Confidence": "confidence", "Models": "models"}


def chromium_available() -> bool:
    if not Path(CHROMIUM).exists():
        return False
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Started instead of `python -m streamlit` when a test watches the server's own network use: an audit hook (PEP 578)
# appends every address the process resolves or connects to, one per line, before the call is made.
_AUDITED_STREAMLIT = """
import sys
log = open(sys.argv.pop(1), "a", buffering=1)
def hook(event, args):
    if event == "socket.getaddrinfo":
        log.write(f"resolve {args[0]}\\n")
    elif event == "socket.connect" and isinstance(args[1], tuple):
        log.write(f"connect {args[1][0]}\\n")
sys.addaudithook(hook)
from streamlit.web.cli import main
sys.argv[0] = "streamlit"
main()
"""


@contextmanager
def dashboard(env: dict[str, str] | None = None, timeout_s: float = 60, *, address: str | None = "127.0.0.1",
              network_log: Path | None = None, app_dir: str | os.PathLike | None = None):
    """Run ``streamlit run app.py`` on a free port; yields its base URL (on loopback).

    ``app_dir``: another checkout's app (a benchmark's baseline commit); this repository's by default.
    ``address=None`` leaves the address to .streamlit/config.toml, as a user's ``streamlit run app.py`` does.
    ``network_log``: every host name the server resolves and every address it connects to are written there."""
    port = free_port()
    launcher = ["-m", "streamlit"] if network_log is None else ["-c", _AUDITED_STREAMLIT, str(network_log)]
    proc = subprocess.Popen(
        [sys.executable, *launcher, "run", str(Path(app_dir or REPO) / "app.py"), "--server.headless", "true",
         "--server.port", str(port), *(["--server.address", address] if address else [])],
        # the rest from .streamlit/config.toml, as users get it
        cwd=Path(app_dir or REPO), env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: {proc.stdout.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def browser_page(width: int = 1400, height: int = 1800):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def wait_until_idle(page, timeout_s: float = 60) -> None:
    """Wait until the Streamlit script run has finished and the page shows no spinner."""
    # A page's own title appears only once its script has run: the skeleton shown before has none.
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        running = (page.locator('[data-testid="stStatusWidget"]').count() > 0
                   or page.locator('[data-testid="stSpinner"]').count() > 0)
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:  # a rerun can start right after another ends
            return
        time.sleep(0.2)
    raise TimeoutError("the page kept running")


def open_page(page, base_url: str, name: str, timeout_s: float = 60) -> None:
    page.goto(f"{base_url}/{PAGE_PATHS[name]}")
    wait_until_idle(page, timeout_s)


def page_errors(page) -> list[str]:
    """Texts of Streamlit exception boxes on the page (a traceback shown to the user)."""
    return [e.inner_text() for e in page.locator('[data-testid="stException"]').all()]


def show_finished_morph(page) -> None:
    """Class Visualization as the README shows it: the first test 4 morphed toward 9 by the default models
    (the sidebar's standard CNN, then the robust ones), scrolled to the first two results."""
    page.get_by_text("A test image").click(timeout=180_000)
    wait_until_idle(page)
    page.get_by_role("spinbutton", name="Test image").fill("4")
    page.get_by_role("spinbutton", name="Test image").press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Morph", exact=True).click()
    page.wait_for_timeout(1000)
    wait_until_idle(page, 300)
    # The results arrive model by model, with a progress bar (not a spinner) until the last one.
    page.get_by_role("button", name="Cancel").first.wait_for(state="detached", timeout=300_000)
    wait_until_idle(page, 300)
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()


def show_two_models_at_eps_03(page) -> None:
    """Attack as the README shows it: the standard and the PGD-AT CNN on 100 test images (computed on first
    use, a few minutes), the slider dragged to eps = 0.3."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Test images").click()
    page.get_by_role("option", name="100", exact=True).click()
    wait_until_idle(page)
    models = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Models").first
    models.click()
    page.get_by_role("option", name="CNN · PGD-AT ε=0.3").click()
    page.keyboard.press("Escape")
    wait_until_idle(page)
    compute = page.get_by_role("button", name="Compute (")
    if compute.count():
        compute.first.click()
        page.wait_for_timeout(1000)
        # The search runs in the server's job runner (the page is idle between the status fragment's reruns):
        # done when the curves' figure draws the second model.
        page.locator(".js-plotly-plot").first.filter(has_text="PGD-AT").wait_for(timeout=900_000)
        wait_until_idle(page, 900)
    # The gallery's digits are crafted after the curves are shown: the screenshot waits for them.
    page.get_by_text("Crafting the gallery").first.wait_for(state="detached", timeout=900_000)
    wait_until_idle(page, 300)
    page.keyboard.press("Escape")
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    drag_slider(page, 0.75)


def show_calibration(page) -> None:
    """Confidence once its tables are in (the first visit fits the validation temperature)."""
    page.get_by_text("Accuracy and calibration").first.wait_for(timeout=300_000)
    wait_until_idle(page, 300)


def show_saliency_grid(page) -> None:
    """Saliency once its grid is drawn (the first visit computes 24 maps, with a progress bar, not a spinner)."""
    page.get_by_text("maps in").first.wait_for(timeout=300_000)
    wait_until_idle(page, 300)


def drag_slider(page, fraction: float) -> None:
    """Drag the first Plotly slider's handle to ``fraction`` of its rail, as a hand would, then let it settle."""
    grip = page.locator(".slider-grip-rect").first.bounding_box()
    rail = page.locator(".slider-rail-rect").first.bounding_box()
    page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
    page.mouse.down()
    page.mouse.move(rail["x"] + rail["width"] * fraction, grip["y"] + grip["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_timeout(500)


# What a page's README screenshot shows beyond its opening view.
PREPARE = {"Class Visualization": show_finished_morph, "Attack": show_two_models_at_eps_03,
           "Confidence": show_calibration, "Saliency": show_saliency_grid}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "assets" / "screenshots"))
    parser.add_argument("--pages", nargs="*", default=list(PAGE_PATHS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with dashboard() as url, browser_page() as page:
        for name in args.pages:
            open_page(page, url, name, timeout_s=300)  # a first view may compute (the Saliency grid on 3 models)
            if name in PREPARE:
                PREPARE[name](page)
            errors = page_errors(page)
            path = out / f"{name.lower().replace(' ', '_')}.png"
            page.screenshot(path=str(path), full_page=True)
            print(f"{name}: {path}" + (f"  ERRORS: {errors}" if errors else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
