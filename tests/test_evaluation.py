import json

import pytest
import torch

from robust_core.evaluate import main as evaluate_main
from robust_core.evaluation import (
    EvalKey,
    EvaluationCache,
    accuracy_at,
    attack_comparison_warnings,
    cached_minimal_eps,
    model_sanity_warnings,
    parse_eps_grid,
    perturbation_stats,
    sanity_warnings,
)
from robust_core.plots import eps_slider_figure
from robust_core.store import ModelStore


def test_accuracy_lookup_and_statistics():
    min_eps = torch.tensor([0.0, 0.1, 0.2, float("inf")])
    assert accuracy_at(min_eps, [0.0, 0.1, 0.15, 1.0]).tolist() == [0.75, 0.5, 0.5, 0.25]
    stats = perturbation_stats(min_eps)
    assert stats["n"] == 2 and stats["median"] == pytest.approx(0.15)


def test_eps_grid_parsing():
    assert parse_eps_grid("0.05:0.3:0.05") == [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    assert parse_eps_grid("0.1, 0.3") == [0.1, 0.3]
    with pytest.raises(ValueError, match="start:stop:step"):
        parse_eps_grid("0.3:0.1:0.05")


def test_cache_survives_a_new_process_and_ignores_corrupt_files(store, tiny_result, mnist, monkeypatch):
    entry = store.save(tiny_result)
    x, y = mnist.test_x[:20], mnist.test_y[:20]
    values = cached_minimal_eps(store, EvaluationCache(store), entry.model_id, x, y, attack="fgsm", eps_max=0.3)
    from robust_core import evaluation

    def must_not_run(*args, **kwargs):
        raise AssertionError("computed twice")

    monkeypatch.setattr(evaluation.cache, "minimal_eps", must_not_run)
    fresh = EvaluationCache(ModelStore(store.root))
    again = cached_minimal_eps(ModelStore(store.root), fresh, entry.model_id, x, y, attack="fgsm", eps_max=0.3)
    assert torch.equal(values, again)
    key = EvalKey(entry.model_id, "fgsm", (("eps_max", 0.3),), 20, 0)
    path = entry.path / "evaluations" / f"{key.digest()}.json"
    path.write_text("{broken")
    assert EvaluationCache(store).get(key) is None


def test_sanity_warnings_catch_probabilities_and_flat_curves(small_cnn, mnist):
    x, y = mnist.test_x[:32], mnist.test_y[:32]
    assert model_sanity_warnings(small_cnn, x, y) == []
    softmaxed = torch.nn.Sequential(small_cnn, torch.nn.Softmax(dim=1))
    assert any("probabilities" in w for w in model_sanity_warnings(softmaxed, x, y))
    flat = torch.full((100,), float("inf"))
    assert sanity_warnings({"m": flat}, attack="pgd", eps_max=0.4)
    assert not sanity_warnings({"m": torch.zeros(100)}, attack="pgd", eps_max=0.4)
    masked = attack_comparison_warnings({"pgd": [0.9, 0.8], "square": [0.9, 0.3]}, [0.1, 0.3])
    assert masked and "Square" in masked[0]


def test_slider_figure_has_one_frame_per_eps_with_gallery():
    import numpy as np

    eps = [0.0, 0.1, 0.2]
    gallery = {"clean": np.zeros((2, 28, 28)), "adversarial": np.zeros((3, 2, 28, 28)), "labels": np.array([1, 2]),
               "predictions": np.array([[1, 2], [1, 3], [0, 3]]), "confidences": np.ones((3, 2)), "model": "m"}
    fig = eps_slider_figure(eps, {"m": [1.0, 0.5, 0.0]}, gallery=gallery)
    assert len(fig.frames) == 3 and len(fig.layout.sliders[0].steps) == 3
    assert "0.0%" in fig.frames[2].layout.title.text


def test_evaluate_command_prints_a_table_and_writes_json(store, tiny_result, tmp_path, capsys):
    entry = store.save(tiny_result, name="cli")
    out = tmp_path / "r.json"
    code = evaluate_main(["--model", entry.model_id[:6], "--attack", "fgsm", "--eps", "0:0.2:0.1", "--n", "50",
                          "--json", str(out), "--store", str(store.root)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "FGSM" in printed and "cli" in printed
    result = json.loads(out.read_text())
    acc = result["models"][entry.model_id]["accuracy"]
    assert len(acc) == 3 and acc[0] >= acc[2]
    assert evaluate_main(["--model", "zzzz", "--store", str(store.root)]) == 2


def test_transfer_eps_from_a_model_to_itself_matches_white_box_and_warns_when_it_wins(small_cnn, mnist):
    from robust_core.evaluation import robust_accuracy, transfer_minimal_eps

    x, y = mnist.test_x[:100], mnist.test_y[:100]
    self_transfer = transfer_minimal_eps(small_cnn, small_cnn, x, y, attack="fgsm", eps_max=0.3, grid_points=6)
    grid = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    direct = robust_accuracy(small_cnn, x, y, attack="fgsm", eps_grid=grid)
    # Crafted on the model itself, "transfer" is white-box FGSM, best of the grid up to each eps.
    lookup = accuracy_at(self_transfer, grid).tolist()
    assert all(looked <= d + 1e-6 for looked, d in zip(lookup, direct))
    assert attack_comparison_warnings({"pgd": [0.9, 0.8], "transfer:abc:pgd": [0.9, 0.2]}, [0.1, 0.3])
    assert not attack_comparison_warnings({"pgd": [0.5, 0.1], "transfer:abc:pgd": [0.9, 0.6]}, [0.1, 0.3])


def test_catastrophic_overfitting_is_flagged_when_fgsm_stays_flat_far_above_iterative_attacks():
    """Issue 13, item 2: the FGSM-trained CNN's curves (FGSM ~94% flat up to 0.3, PGD/APGD/Square at 0% by 0.27)."""
    from robust_core.evaluation import attack_comparison_warnings, single_step_masking

    eps = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    masked = {"fgsm": [0.99, 0.96, 0.94, 0.93, 0.93, 0.94, 0.94], "pgd": [0.99, 0.93, 0.55, 0.2, 0.03, 0.0, 0.0],
              "apgd_ce": [0.99, 0.92, 0.5, 0.15, 0.02, 0.0, 0.0], "square": [0.99, 0.95, 0.7, 0.4, 0.1, 0.01, 0.0]}
    [found] = single_step_masking(masked, eps)
    assert found["attack"] == "fgsm" and found["strongest"] == "apgd_ce" and found["eps"] == 0.25 and found["flat"]
    assert found["first_eps"] == 0.1 and abs(found["gap"] - 0.94) < 1e-9
    warnings = attack_comparison_warnings(masked, eps)
    assert any("catastrophic overfitting" in w and "APGD-CE" in w and "flat" in w and "reports/deepdefense.md" in w
               for w in warnings), warnings
    # A real defence: FGSM a few points above PGD, both falling with eps. No masking signature.
    robust = {"fgsm": [0.99, 0.98, 0.97, 0.95, 0.93, 0.91, 0.9], "pgd": [0.99, 0.98, 0.96, 0.94, 0.92, 0.9, 0.88]}
    assert single_step_masking(robust, eps) == []
    assert not any("catastrophic" in w for w in attack_comparison_warnings(robust, eps))
    # FGSM weaker by more than 20 points but falling steadily: a weaker attack, not the signature.
    falling = {"fgsm": [0.99, 0.9, 0.75, 0.6, 0.45, 0.35, 0.3], "pgd": [0.99, 0.8, 0.4, 0.1, 0.0, 0.0, 0.0]}
    assert single_step_masking(falling, eps) == []


def test_masking_signature_on_the_measured_fgsm_trained_cnn_curves():
    """The shipped FGSM-AT CNN on the first 100 test images (measured): FGSM falls again only at eps 0.4."""
    from robust_core.evaluation import single_step_masking

    eps = [0.0, 0.05, 0.1, 0.2, 0.27, 0.3, 0.4]
    measured = {"fgsm": [1.0, 1.0, 0.97, 0.94, 0.94, 0.93, 0.75], "pgd": [1.0, 0.94, 0.7, 0.09, 0.0, 0.0, 0.0],
                "apgd_ce": [1.0, 0.94, 0.58, 0.05, 0.0, 0.0, 0.0], "square": [1.0, 0.96, 0.81, 0.19, 0.02, 0.0, 0.0]}
    [found] = single_step_masking(measured, eps)
    assert found["flat"] and found["eps"] == 0.27 and found["first_eps"] == 0.1


def test_changing_one_attacks_code_version_recomputes_only_its_results(monkeypatch):
    """Results cached for an attack whose code has changed are not reused; the other attacks' (the shipped
    evaluations among them) stay valid."""
    import robust_core.evaluation as ev

    keys = {a: ev.EvalKey("m", a, (("eps_max", 0.4),), 100, 0) for a in ("pgd", "fgsm")}
    before = {a: k.digest() for a, k in keys.items()}
    monkeypatch.setitem(ev.ATTACK_CODE_VERSIONS, "pgd", 99)
    assert keys["pgd"].digest() != before["pgd"] and keys["fgsm"].digest() == before["fgsm"]


def test_the_comparisons_coarse_square_search_measures_exactly_on_its_grid(small_cnn, mnist):
    """Issue 16: the comparison searches Square with 3 bisection steps. Each image's result is 0, inf or a multiple
    of eps_max / 8, so the accuracy read at those eps is a measurement; the page draws it only there."""
    from robust_core.evaluation import (
        COMPARISON_SEARCH,
        comparison_params,
        measured_eps_grid,
        minimal_eps,
    )

    params = comparison_params("square")
    assert params["bisection_steps"] == COMPARISON_SEARCH["square"]["bisection_steps"] == 3
    assert params["eps_max"] == 0.4 and params["n_queries"] == 1000  # the page's Square, only the search is coarser
    grid = measured_eps_grid(params, default=[0.0, 0.01])
    assert grid == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
    assert measured_eps_grid(comparison_params("pgd"), default=[0.0, 0.01]) == [0.0, 0.01]  # fine search: the frames
    x, y = mnist.test_x[:24], mnist.test_y[:24]
    found = minimal_eps(small_cnn, x, y, attack="square", **{**params, "n_queries": 50}, seed=0)
    finite = found[torch.isfinite(found)]
    assert len(finite) and all(min(abs(v - g) for g in grid) < 1e-6 for v in finite.tolist())


def test_autoattack_at_eps_zero_is_the_clean_accuracy_cached_where_the_sweep_reads_it(store, tiny_result, mnist):
    """ε = 0 runs no stage: robust accuracy is the clean one. The page's key and the sweep's job name one entry."""
    from robust_core.evaluation import AutoAttackKey, cached_autoattack, read_autoattack
    from robust_core.sweep import Job

    entry = store.save(tiny_result)
    x, y = mnist.test_x[:30], mnist.test_y[:30]
    key = AutoAttackKey(entry.model_id, "autoattack_fast", 0.0, 30, 0)
    assert read_autoattack(store, key) is None
    result = cached_autoattack(store, key, x, y)
    with torch.no_grad():
        correct = (store.load(entry.model_id)(x).argmax(1) == y).tolist()
    assert result["stages"] == [] and result["robust"] == [int(c) for c in correct]
    assert result["robust_accuracy"] == result["clean_accuracy"] == sum(correct) / 30
    job = Job("autoattack", entry.model_id, "mnist", "autoattack_fast", (), 30, 0, 0.0)
    assert read_autoattack(store, job) == read_autoattack(store, key) == result
    with pytest.raises(ValueError, match="30 images"):
        cached_autoattack(store, key, x[:10], y[:10])  # a key's n is the number of images it was computed on
