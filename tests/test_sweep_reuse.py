"""The sweep reads minimal-ε results cached for more test images (the shipped ones on the first 1,000 included)
instead of searching again, only where the search is exactly the same; and its figures open offline."""
import json
import re
from pathlib import Path

import pytest
import torch

from robust_core.evaluation import CURVE_ATTACK_PARAMS, minimal_eps
from robust_core.precomputed import precomputed_results
from robust_core.store import ModelStore
from robust_core.sweep import EvalGrid, main, prefix_stable, run_sweep, write_outputs

from .browser import CHROMIUM, CHROMIUM_ARGS, chromium_available

SHIPPED_PAIR = ("b2b72c46c4b55fa5", "2a34f7c1f4ac9e92")  # the standard and the PGD-AT CNN


class SearchRan(AssertionError):
    pass


@pytest.fixture
def no_search(monkeypatch):
    """Any minimal-ε search fails the test: what the sweep returns must come from the caches."""
    def refuse(*args, **kwargs):
        raise SearchRan("a minimal-ε search ran")
    monkeypatch.setattr("robust_core.evaluation.cache.minimal_eps", refuse)  # the search behind every cached result


@pytest.fixture
def shipped_store(store):
    from robust_core.shipped import install_shipped

    install_shipped(store)
    return store


def shipped_values(model_id: str, attack: str) -> list[float]:
    items, _ = precomputed_results()
    [item] = [i for i in items if i.key.model_id == model_id and i.key.attack == attack
              and dict(i.key.params) == {"eps_max": 0.4, **CURVE_ATTACK_PARAMS[attack]}]
    return [float(v) for v in item.payload["min_eps"]]


def test_the_issue_sweep_reads_the_shipped_results_and_runs_no_search(shipped_store, no_search, tmp_path, capsys):
    eps = [0.1, 0.3]
    result = run_sweep(EvalGrid(models=[m[:4] for m in SHIPPED_PAIR], attacks=["pgd"], eps=eps, n=100),
                       store=ModelStore(shipped_store.root), progress=False)
    assert (result.reused, result.computed, result.reused_from_larger) == (2, 0, 2)
    for model_id in SHIPPED_PAIR:
        # Robust at ε iff the minimal ε is above it, in float32 as the Attack page's lookup reads it.
        table = torch.tensor(shipped_values(model_id, "pgd")[:100], dtype=torch.float32)
        expected = [sum(float(v) > float(torch.tensor(e, dtype=torch.float32)) for v in table) / 100 for e in eps]
        got = [r["robust_accuracy"] for r in result if r["model_id"] == model_id]
        assert got == pytest.approx(expected, abs=1e-6)
    assert all(r["reused_from"]["n_examples"] == 1000 for r in result.runs)
    # The command line says so; the figure is drawn from the same values.
    out = tmp_path / "out"
    assert main(["--models", ",".join(SHIPPED_PAIR), "--attacks", "pgd,fgsm", "--eps", "0.1,0.3", "--n", "100",
                 "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 jobs: 4 reused from the caches, 0 computed (4 of the reused read from a cached result" in printed
    assert (out / "accuracy_mnist_pgd.html").is_file() and (out / "accuracy_mnist_fgsm.html").is_file()
    # Its own entry on all 1,000 images: an exact hit.
    whole = run_sweep(EvalGrid(models=[SHIPPED_PAIR[0]], attacks=["pgd"], eps=eps, n=1000), progress=False)
    assert (whole.reused, whole.reused_from_larger) == (1, 0)


@pytest.mark.parametrize("change", [{"attack_params": {"pgd": {"steps": 20}}}, {"seed": 1}, {"n": 1001},
                                    {"attack_params": {"pgd": {"restarts": 2}}},
                                    {"attack_params": {"pgd": {"eps_max": 0.5}}}],
                         ids=["steps", "seed", "more-images", "restarts", "eps_max"])
def test_a_different_search_is_not_read_from_the_shipped_results(shipped_store, no_search, change):
    grid = {"models": [SHIPPED_PAIR[0]], "attacks": ["pgd"], "eps": [0.1], "n": 100, **change}
    with pytest.raises(SearchRan):
        run_sweep(EvalGrid(**grid), store=shipped_store, progress=False)


def test_which_searches_reuse_trusts():
    assert prefix_stable("pgd", {"steps": 40, "restarts": 1}) and prefix_stable("fgsm", {})
    assert prefix_stable("pgd", {"restarts": 3, "random_start": False})
    assert not prefix_stable("pgd", {"restarts": 2})  # a restart's draws follow the previous restart's count
    assert not prefix_stable("pgd_l2", {})  # the radii are drawn after every image's direction
    assert not any(prefix_stable(a, {}) for a in ("square", "apgd_ce", "deepfool", "cw_l2"))


@pytest.mark.parametrize("attack,params", [("pgd", {"steps": 5, "restarts": 1}), ("fgsm", {})])
def test_the_first_images_get_the_same_minimal_eps_whatever_follows_them(tiny_result, mnist, attack, params):
    """What reuse rests on: batches of 16, so the 11 images share a batch with others only in the larger run."""
    x, y = mnist.test_x[:37], mnist.test_y[:37]
    kwargs = {"attack": attack, "eps_max": 0.4, "batch_size": 16, "seed": 3, **params}
    many = minimal_eps(tiny_result.model, x, y, **kwargs)
    few = minimal_eps(tiny_result.model, x[:11], y[:11], **kwargs)
    assert torch.isfinite(many).any() and torch.equal(many[:11], few)


def test_a_larger_cached_sweep_gives_the_smaller_one_exactly(store, tiny_result, tmp_path):
    """The store's own results too: the first 12 of a 30-image sweep, equal to a 12-image search in a fresh store."""
    model_id = store.save(tiny_result, name="tiny").model_id
    fresh = ModelStore(tmp_path / "fresh")
    fresh.save(tiny_result, name="tiny")
    grid = {"models": [model_id], "attacks": ["pgd", "fgsm"], "eps": [0.05, 0.1, 0.2], "seed": 2,
            "attack_params": {"pgd": {"steps": 4}}}
    assert run_sweep(EvalGrid(**grid, n=30), store=store, progress=False, threads=1).computed == 2
    small = run_sweep(EvalGrid(**grid, n=12), store=ModelStore(store.root), progress=False, threads=1)
    assert (small.reused, small.reused_from_larger, small.computed) == (2, 2, 0)
    searched = run_sweep(EvalGrid(**grid, n=12), store=fresh, progress=False, threads=1)
    assert searched.computed == 2 and list(small) == list(searched)
    assert [r["minimal_perturbation"] for r in small.runs] == [r["minimal_perturbation"] for r in searched.runs]


def figure_html(tmp_path, shipped_store) -> Path:
    result = run_sweep(EvalGrid(models=list(SHIPPED_PAIR), attacks=["pgd"], eps=[0.1, 0.3], n=100),
                       store=shipped_store, progress=False)
    out = tmp_path / "figures"
    written = write_outputs(result, out, shipped_store)
    assert out / "plotly.min.js" in written
    return out / "accuracy_mnist_pgd.html"


def test_the_figures_load_no_script_from_the_network(shipped_store, no_search, tmp_path):
    html_path = figure_html(tmp_path, shipped_store)
    html = html_path.read_text()
    sources = re.findall(r"<script[^>]*\ssrc=[\"']([^\"']+)", html)
    assert sources == ["plotly.min.js"] and not re.search(r"src=[\"']?(https?:)?//", html)
    js = (html_path.parent / "plotly.min.js").read_text()
    from plotly.offline import get_plotlyjs

    assert js == get_plotlyjs() and len(js) > 1_000_000
    # Written once for all the figures, and rewritten when another plotly's file was left there.
    (html_path.parent / "plotly.min.js").write_text("/* another version */")
    figure_html(tmp_path, shipped_store)
    assert (html_path.parent / "plotly.min.js").read_text() == js
    assert json.loads((html_path.parent / "results.json").read_text())["jobs"]["computed"] == 0


@pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")
def test_a_figure_renders_offline_in_chromium(shipped_store, no_search, tmp_path):
    from playwright.sync_api import sync_playwright

    html_path = figure_html(tmp_path, shipped_store)
    asked = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route(re.compile(r"^https?://"), lambda route: (asked.append(route.request.url), route.abort()))
            page.goto(html_path.as_uri())
            page.wait_for_selector("svg.main-svg .scatterlayer .trace", state="attached", timeout=30_000)
            traces = page.locator("svg.main-svg .scatterlayer .trace").count()
        finally:
            browser.close()
    assert traces >= 2 and asked == []  # one curve per model, nothing fetched from the network
