"""Beyond one machine: two replicas, each run from its own working folder (as on two hosts), share one store folder.

A model trained through one replica's Train page is listed by the other's Models page, and the two replicas asked
for the same first-time curve at the same moment compute it once: its cache file is written once, never replaced
(robust_core.file_locks.compute_once; the README's "Several hosts" recipe)."""
import asyncio
import shutil
import time
from pathlib import Path

import pytest

from robust_core.store import ModelStore

from .browser import REPO, browser_page, chromium_available, dashboard, open_page, wait_until_idle

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")

COPIED = ["app.py", "lab_pages", "robust_core", "assets", ".streamlit"]


def working_folder(root: Path) -> Path:
    """A host's own checkout of the dashboard: the files a replica runs from, nothing shared but the store."""
    root.mkdir()
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "screenshots"))
        else:
            shutil.copy2(source, root / name)
    return root


async def compute_curves(base: str, model_id: str) -> None:
    """One student on ``base`` opens the Attack page on ``model_id`` (PGD, 100 images) and clicks Compute."""
    from benchmarks.streamlit_client import ProtocolSession

    session = ProtocolSession(base)
    try:
        await session.connect()
        await session.open("attack", {"models": model_id, "attack": "pgd", "n": "100"}, timeout_s=120)
        label = next(e.button.label for kind, e in session.elements if kind == "button"
                     and e.button.label.startswith("Compute ("))
        await session.click(label, timeout_s=120)
        # The job runs in the replica's runner; the page's status fragment reruns it until the curves are shown
        # (the elements are those received since the click: none was a chart while nothing was computed).
        await session.wait_for(lambda els: session.has("plotly_chart"), timeout_s=180)
        assert not session.exceptions(), session.exceptions()
    finally:
        await session.close()


def test_a_model_trained_on_one_replica_is_listed_and_evaluated_once_by_both(isolated_store, tmp_path):
    host_a, host_b = working_folder(tmp_path / "host_a"), working_folder(tmp_path / "host_b")
    env = {"ROBUST_STORE_DIR": str(isolated_store), "ROBUST_SHIPPED_MODELS": "0"}
    with dashboard(env={**env, "ROBUST_REPLICA_ID": "a"}, app_dir=host_a) as a, \
            dashboard(env={**env, "ROBUST_REPLICA_ID": "b"}, app_dir=host_b) as b:
        with browser_page(height=1200) as page:  # (Playwright's sync API holds this thread's event loop: closed after)
            open_page(page, a, "Train")
            page.locator('[data-testid="stSelectbox"]').filter(has_text="Training images").click()
            page.get_by_role("option", name="1000", exact=True).click()
            wait_until_idle(page)
            page.get_by_role("button", name="Train", exact=True).click()
            page.get_by_text("saved to the store").wait_for(timeout=120_000)
            [trained] = ModelStore(isolated_store).list()

            open_page(page, b, "Models")
            assert page.get_by_text(trained.name).count() > 0, "replica b does not list the model trained on a"

        evaluations = trained.path / "evaluations"
        seen: dict[str, set[int]] = {}

        async def both_and_watch() -> None:
            task = asyncio.gather(compute_curves(a, trained.model_id), compute_curves(b, trained.model_id))
            while not task.done():
                for f in evaluations.glob("*.json") if evaluations.is_dir() else []:
                    try:
                        seen.setdefault(f.name, set()).add(f.stat().st_ino)
                    except FileNotFoundError:
                        pass
                await asyncio.sleep(0.02)
            await task

        started = time.monotonic()
        asyncio.run(both_and_watch())
        assert time.monotonic() - started < 240
    assert seen, "no curve was cached"
    assert all(len(inodes) == 1 for inodes in seen.values()), f"a cached curve was written twice: {seen}"
