"""The catastrophic-overfitting signature (issue 24, part 1): it needs every part of itself, and on the shipped models'
shipped curves it fires for the FGSM-trained CNN and no other. An FGSM that is only weaker than PGD gets a note."""
import pytest

from robust_core.evaluation import (
    SINGLE_STEP_TRAINING,
    accuracy_at,
    attack_comparison_notes,
    attack_comparison_warnings,
    comparison_params,
    measured_eps_grid,
    single_step_masking,
    training_method_of,
)
from robust_core.training import METHOD_TITLES, METHODS

EPS = [round(0.05 * k, 2) for k in range(9)]  # the comparison's grid with Square in it: 0, 0.05, ..., 0.4
FRAMES = [round(0.4 * k / 40, 6) for k in range(41)]  # the Attack page's 41 slider positions
# Flat and high under FGSM from eps 0.1 to 0.3 while PGD and APGD reach zero at 0.2 (the FGSM-trained CNN's shape).
MASKED = {"fgsm": [0.99, 0.98, 0.94, 0.92, 0.91, 0.90, 0.89, 0.82, 0.67],
          "pgd": [0.99, 0.95, 0.53, 0.18, 0.04, 0.0, 0.0, 0.0, 0.0],
          "apgd_ce": [0.99, 0.95, 0.41, 0.08, 0.02, 0.0, 0.0, 0.0, 0.0]}
# Weaker under FGSM, falling with eps (the standard CNN's shape: 54% vs 5% at 0.17, 2% at 0.4).
FALLING = {"fgsm": [0.99, 0.9, 0.78, 0.55, 0.33, 0.17, 0.07, 0.03, 0.02],
           "pgd": [0.99, 0.84, 0.52, 0.07, 0.0, 0.0, 0.0, 0.0, 0.0]}


def test_flat_high_single_step_over_near_zero_iterative_attacks_is_the_signature():
    [m] = single_step_masking(MASKED, EPS)
    assert m["attack"] == "fgsm" and m["zero_eps"] == 0.2 and (m["from_eps"], m["until_eps"]) == (0.1, 0.3)
    assert m["plateau"] == (0.89, 0.94) and m["strongest"] == "apgd_ce" and m["eps"] == 0.25  # ties: by name
    assert m["first_eps"] == 0.1 and m["gap"] == pytest.approx(0.90)
    [warning] = attack_comparison_warnings(MASKED, EPS, training_method="fgsm_at")
    assert "catastrophic overfitting" in warning and "trained on" in warning and "89.0% and 94.0%" in warning
    assert attack_comparison_notes(MASKED, EPS) == []  # a warning, not also a note


def test_a_falling_single_step_curve_is_a_weaker_attack_with_a_note_and_no_warning():
    assert single_step_masking(FALLING, EPS) == []
    assert attack_comparison_warnings(FALLING, EPS, training_method="standard") == []
    [note] = attack_comparison_notes(FALLING, EPS)
    assert "weaker attack" in note and "falls as ε grows" in note and "masking" not in note.split(":")[0]


@pytest.mark.parametrize("change", [
    # The iterative attacks never reach near zero: no collapse under which the single step could be flat.
    lambda c: {**c, "pgd": [max(v, 0.3) for v in c["pgd"]], "apgd_ce": [max(v, 0.3) for v in c["apgd_ce"]]},
    # The single step stays flat, but low: not "high".
    lambda c: {**c, "fgsm": [min(v, 0.45) for v in c["fgsm"]]},
    # The single step falls by 10 points or more over the window (0.94 at 0.1 down to 0.80 at 0.3).
    lambda c: {**c, "fgsm": c["fgsm"][:5] + [0.86, 0.80] + c["fgsm"][7:]},
    # The single step falls by 14 points while the iterative attacks fall (from 0.1 to 0.15), flat only after.
    lambda c: {**c, "fgsm": c["fgsm"][:3] + [0.8, 0.8, 0.8, 0.8] + c["fgsm"][7:]},
])
def test_each_part_of_the_signature_is_needed(change):
    curves = change(MASKED)
    assert single_step_masking(curves, EPS) == []
    assert not any("catastrophic" in w for w in attack_comparison_warnings(curves, EPS, training_method="fgsm_at"))


def test_only_a_single_step_training_method_says_trained_on():
    for method in [*sorted(METHODS), None, "external", "something_else"]:
        [warning] = attack_comparison_warnings(MASKED, EPS, training_method=method)
        assert ("trained on" in warning) == (method in SINGLE_STEP_TRAINING), (method, warning)
        if method not in SINGLE_STEP_TRAINING:
            assert "resists the single-step attack" in warning
        if method in METHOD_TITLES and method not in SINGLE_STEP_TRAINING:
            assert METHOD_TITLES[method] in warning  # says which training it was


def test_single_step_training_methods_are_the_one_step_adversarial_methods():
    assert SINGLE_STEP_TRAINING <= set(METHODS)
    assert all(METHODS[m].adversarial and "steps" not in METHODS[m].defaults for m in SINGLE_STEP_TRAINING)
    assert {m for m, spec in METHODS.items() if "steps" in spec.defaults}.isdisjoint(SINGLE_STEP_TRAINING)
    assert training_method_of({"config": {"method": "fgsm_at"}}) == "fgsm_at"
    assert training_method_of({}) is None and training_method_of(None) is None
    assert training_method_of({"config": "nonsense"}) is None and training_method_of({"config": {"method": 3}}) is None


def _shipped_comparisons():
    """{model id: (metadata, {attack: minimal eps})} of every shipped result (assets/evaluations), read as shipped."""
    from robust_core.precomputed import precomputed_results
    from robust_core.shipped import shipped_models

    meta = {s.model_id: s.meta for s in shipped_models()}
    items, errors = precomputed_results()
    assert errors == []
    out = {}
    for item in items:
        assert item.path.stem == item.key.digest(), item.path.name  # the key the current code computes
        out.setdefault(item.key.model_id, (meta[item.key.model_id], {}))[1][item.key.attack] = item.values()
    return out


def _page_curves(min_eps: dict, attacks) -> tuple[list[float], dict]:
    # As the Attack page's comparison: every attack read on the coarsest grid any of them was measured on.
    grid = min((measured_eps_grid(comparison_params(a), FRAMES) for a in attacks), key=len)
    return grid, {a: accuracy_at(min_eps[a], grid).tolist() for a in attacks}


def test_on_every_shipped_models_shipped_curves_the_signature_fires_for_fgsm_at_and_no_other():
    from robust_core.shipped import shipped_models

    shipped = _shipped_comparisons()
    networks = [s for s in shipped_models() if s.meta["config"]["dataset"] == "mnist"
                and s.meta["config"]["arch"] not in ("knn", "logreg")]
    assert {s.model_id for s in networks} <= set(shipped)  # every shipped MNIST network has curves to check
    fired = []
    for model_id, (meta, min_eps) in shipped.items():
        method = training_method_of(meta)
        # Every set of attacks a page can show from the shipped results: FGSM and PGD (the curves' paths), and
        # the whole comparison.
        for attacks in ({"fgsm", "pgd"}, set(min_eps)):
            grid, curves = _page_curves(min_eps, sorted(attacks))
            found = single_step_masking(curves, grid)
            warnings = attack_comparison_warnings(curves, grid, training_method=method)
            if found:
                fired.append((method, len(attacks)))
                [m] = found
                assert m["plateau"][0] >= 0.5 and m["strongest_accuracy"] <= 0.05
                assert any("catastrophic overfitting" in w and "trained on" in w for w in warnings)
            else:
                assert warnings == [], (meta["name"], warnings)
    # The FGSM-trained CNN on FGSM and PGD alone, and on its whole shipped comparison (with APGD-CE and Square).
    assert sorted(fired) == [("fgsm_at", 2), ("fgsm_at", 4)]


def test_on_the_shipped_fashion_mlps_computed_curves_no_signature(monkeypatch):
    """No FGSM/PGD curves ship for the Fashion-MNIST MLPs: computed here on 200 test images (about 2 s each)."""
    import torch

    from robust_core.data import load_dataset
    from robust_core.evaluation import minimal_eps
    from robust_core.shipped import shipped_models
    from robust_core.store import ModelStore

    fashion = [s for s in shipped_models() if s.meta["config"]["dataset"] == "fashion_mnist"]
    assert fashion
    data = load_dataset("fashion_mnist", download=False)
    x, y = data.test_x[:200], data.test_y[:200]
    store = ModelStore()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for s in fashion:
            entry, _ = store.import_bytes(s.file.read_bytes())
            model = store.load(entry.model_id)
            min_eps = {a: minimal_eps(model, x, y, attack=a, seed=0, **comparison_params(a)) for a in ("fgsm", "pgd")}
            grid, curves = _page_curves(min_eps, ["fgsm", "pgd"])
            assert single_step_masking(curves, grid) == [], s.name
            assert attack_comparison_warnings(curves, grid, training_method=training_method_of(s.meta)) == [], s.name
    finally:
        torch.set_num_threads(threads)
