"""FAB (Croce & Hein, ICML 2020): its box-constrained projections against a reference solver, the exact
minimal distances of linear models, the box, the eps budget, and FAB against PGD and DeepFool on a CNN.

Tolerances on linear models: FAB has no final line search. Its first success overshoots the boundary
by eta = 1.05; the pull back (beta = 0.9) leaves 0.945 of that, and the next step (alpha about 0.05)
lands at about (1 - alpha)(0.945 + 1.05 * 0.055) + 1.05 alpha = 1.0052 times the minimal distance;
later successes land between 1.005 and 1.01. So the best found is 1.005 times the analytic distance
for most images, and never more than 1.5% above it (measured: at most 1.0092).
"""
import math

import pytest
import torch

from robust_core.attacks import ATTACKS, fab, flat_norm
from robust_core.attacks.fab import project_onto_hyperplane_in_box
from robust_core.evaluation import minimal_eps
from tests.test_attacks import (
    Linear,  # the linear model the other attacks are checked on
)

NORMS = ("linf", "l2", "l1")
DUAL = {"linf": 1, "l2": 2, "l1": math.inf}  # ||w||_q for the attack's norm p


def reference_distance(w, b, lower, upper, norm):
    """min ||delta|| subject to <w, delta> = b and lower <= delta <= upper, by another method than
    the attack's (a linear program for L1 and L-inf; bisection on the KKT multiplier for L2); None
    where the box cannot reach the hyperplane. One problem, as float64 numpy arrays."""
    import numpy as np

    optimize = pytest.importorskip("scipy.optimize")
    d = len(w)
    if norm == "l2":
        def reached(lam):
            return float(w @ np.clip(lam * w, lower, upper))

        if not min(reached(-1e9), reached(1e9)) - 1e-12 <= b <= max(reached(-1e9), reached(1e9)) + 1e-12:
            return None
        lo, hi = -1e9, 1e9  # reached() is nondecreasing in lam
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if reached(mid) < b else (lo, mid)
        return float(np.linalg.norm(np.clip(hi * w, lower, upper)))
    if norm == "l1":  # delta = p - m, p, m >= 0: min sum(p + m)
        res = optimize.linprog(np.ones(2 * d), A_eq=np.concatenate([w, -w])[None], b_eq=[b],
                               bounds=[(0, u) for u in upper] + [(0, -lo) for lo in lower])
    else:  # variables (delta, t): min t, -t <= delta_i <= t
        a_ub = np.zeros((2 * d, d + 1))
        a_ub[:d, :d], a_ub[d:, :d], a_ub[:, d] = np.eye(d), -np.eye(d), -1
        res = optimize.linprog(np.eye(d + 1)[d], A_ub=a_ub, b_ub=np.zeros(2 * d), A_eq=np.append(w, 0)[None], b_eq=[b],
                               bounds=list(zip(lower, upper)) + [(0, None)])
    return float(res.fun) if res.status == 0 else None


@pytest.mark.parametrize("norm", NORMS)
def test_box_constrained_projection_is_the_smallest_step_onto_the_hyperplane(norm):
    torch.manual_seed(0)
    n, d = 60, 8
    w = torch.randn(n, d, dtype=torch.float64)
    w[:10, :3] = 0.0  # coordinates the hyperplane does not depend on
    x = torch.rand(n, d, dtype=torch.float64)
    x[:, 0], x[:, 1] = 0.0, 1.0  # points on the box's faces: room on one side only
    b = torch.randn(n, dtype=torch.float64) * torch.rand(n, dtype=torch.float64) * 3  # some out of the box's reach
    b[-1] = 0.0
    lower, upper = -x, 1 - x
    delta = project_onto_hyperplane_in_box(w, b, lower, upper, norm)
    assert ((delta >= lower - 1e-12) & (delta <= upper + 1e-12)).all()
    assert torch.equal(delta[-1], torch.zeros(d, dtype=torch.float64))
    found = flat_norm(delta, norm)
    unreachable = 0
    for i in range(n):
        ref = reference_distance(w[i].numpy(), float(b[i]), lower[i].numpy(), upper[i].numpy(), norm)
        if ref is None:
            unreachable += 1
            # The box point nearest the hyperplane: every coordinate as far as the box allows toward it, none where w
            # is 0.
            toward = torch.sign(b[i]) * w[i]
            corner = torch.where(toward > 0, upper[i],
                                 torch.where(toward < 0, lower[i], torch.zeros(d, dtype=torch.float64)))
            assert torch.allclose(delta[i], corner, atol=1e-12), i
        else:
            assert float(w[i] @ delta[i]) == pytest.approx(float(b[i]), abs=1e-9), i
            assert float(found[i]) == pytest.approx(ref, rel=1e-7, abs=1e-9), i
    assert 5 <= unreachable <= n - 20  # both cases were exercised


def binary_linear(seed, n=30):
    """f = w.x + b with the boundary through the middle of the box, inputs 0.5 +- 0.05: the box never binds."""
    torch.manual_seed(seed)
    w = torch.randn(1, 20)
    model = Linear(torch.cat([torch.zeros(1, 20), w]), torch.tensor([0.0, -0.5 * float(w.sum())]))
    x = torch.rand(n, 1, 4, 5) * 0.1 + 0.45
    with torch.no_grad():
        f = model(x)[:, 1]
    return model, x, (f > 0).long(), f, w[0]


@pytest.mark.parametrize("norm", NORMS)
def test_fab_on_a_binary_linear_classifier_finds_the_distance_to_the_hyperplane(norm):
    model, x, y, f, w = binary_linear(0)
    distance = f.abs() / w.norm(p=DUAL[norm])  # |w.x + b| / ||w||_q
    x_adv = fab(model, x, y, norm=norm)
    assert (model(x_adv).argmax(1) != y).all()
    ratio = flat_norm(x_adv - x, norm) / distance
    assert float((x_adv - x).abs().max()) < 0.4  # the box did not bind: the analytic distance is the minimum
    assert float(ratio.min()) >= 1 - 1e-5 and float(ratio.max()) <= 1.015
    assert float(ratio.median()) <= 1.006


def five_class_linear(seed=0, n=40):
    torch.manual_seed(seed)
    w = torch.randn(5, 20)
    model = Linear(w, -0.5 * w.sum(1) + 0.05 * torch.randn(5))
    x = torch.rand(n, 1, 4, 5) * 0.1 + 0.45
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    gap = logits - logits.gather(1, y[:, None])  # f_k - f_y
    normal = w[None] - w[y][:, None]  # grad (f_k - f_y): (n, 5, 20)
    return model, x, y, gap, normal


@pytest.mark.parametrize("norm", NORMS)
def test_untargeted_fab_on_a_multiclass_linear_model_finds_the_nearest_boundary(norm):
    model, x, y, gap, normal = five_class_linear()
    distance = gap.abs() / normal.norm(p=DUAL[norm], dim=2)
    distance[torch.arange(len(y)), y] = math.inf
    nearest = distance.min(1).values  # the class region is an intersection of half-spaces: exact
    x_adv = fab(model, x, y, norm=norm)
    assert (model(x_adv).argmax(1) != y).all()
    ratio = flat_norm(x_adv - x, norm) / nearest
    assert float(ratio.min()) >= 1 - 1e-5 and float(ratio.max()) <= 1.015
    assert float(ratio.median()) <= 1.006


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_targeted_fab_reaches_the_target_at_the_distance_to_its_boundary(norm):
    model, x, y, gap, normal = five_class_linear(seed=1)
    rows = torch.arange(len(y))
    target = (y + 1) % 5
    v = normal[rows, target]  # grad (f_t - f_y)
    distance = gap[rows, target].abs() / v.norm(p=DUAL[norm], dim=1)
    # Where the nearest point of the boundary f_t = f_y already reads as t, the distance to it is the
    # minimal targeted distance (elsewhere a third class is in the way, and the minimum is larger).
    step = v / v.norm(dim=1, keepdim=True) if norm == "l2" else v.sign()
    landing = x.flatten(1) + 1.001 * distance[:, None] * step
    exact = model(landing).argmax(1) == target
    assert exact.sum() >= 15
    x_adv = fab(model, x, y, norm=norm, targeted=True, target=target)
    hit = model(x_adv).argmax(1) == target
    # Elsewhere FAB can cycle between two rivals near a corner of the target's region (one image here in L-inf).
    assert hit[exact].all() and hit.float().mean() >= 0.9
    ratio = (flat_norm(x_adv - x, norm) / distance)[exact]
    assert float(ratio.min()) >= 1 - 1e-5 and float(ratio.max()) <= 1.015
    assert float(ratio.median()) <= 1.006


@pytest.mark.parametrize("norm", NORMS)
def test_fab_respects_the_box_where_it_binds(norm):
    """Images near the top of the box whose nearest boundary lies past it: the heavy coordinates have
    only 0 to 0.01 of room, so the minimal perturbation spreads to the light ones."""
    torch.manual_seed(2)
    n, d = 12, 20
    w = torch.cat([torch.full((10,), 2.0), torch.full((10,), 0.5)])
    x = torch.cat([1 - 0.01 * torch.rand(n, 10), 0.3 + 0.4 * torch.rand(n, 10)], 1)
    x[:, 0] = 1.0
    bias = -(x @ w) - (0.5 + torch.rand(n))  # f(x) in [-1.5, -0.5]: class 0, needs f to grow by 0.5 to 1.5
    model = Linear(torch.stack([torch.zeros(d), w]), torch.zeros(2))
    images = x.view(n, 1, 4, 5)
    y = torch.zeros(n, dtype=torch.long)
    found = torch.empty(n)
    for i in range(n):  # one bias per image: a model each
        model.fc.bias.data = torch.tensor([0.0, float(bias[i])])
        x_adv = fab(model, images[i : i + 1], y[i : i + 1], norm=norm)
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
        assert model(x_adv).argmax(1).item() == 1
        found[i] = flat_norm(x_adv - images[i : i + 1], norm)[0]
        unboxed = -float(bias[i] + x[i] @ w) / float(w.norm(p=DUAL[norm]))
        boxed = reference_distance(w.double().numpy(), -float(bias[i] + x[i] @ w), -x[i].double().numpy(),
                                   (1 - x[i]).double().numpy(), norm)
        assert boxed > 1.2 * unboxed  # the box does bind
        assert boxed * (1 - 1e-4) <= float(found[i]) <= boxed * 1.015, (i, float(found[i]), boxed)


@pytest.fixture(scope="module")
def cnn_run(small_cnn, mnist):
    """FAB L-inf and L2 at their defaults on 20 test images of the small CNN (about 2 s each)."""
    x, y = mnist.test_x[:20], mnist.test_y[:20]
    small_cnn.eval()
    clean_ok = small_cnn(x).argmax(1) == y
    return x, y, clean_ok, {norm: fab(small_cnn, x, y, norm=norm) for norm in ("linf", "l2")}


def test_fab_is_as_strong_as_pgd_in_linf_and_stronger_than_deepfool_in_l2(small_cnn, cnn_run):
    x, y, clean_ok, x_adv = cnn_run
    small_cnn.eval()
    assert clean_ok.sum() >= 15
    for norm in ("linf", "l2"):
        assert (small_cnn(x_adv[norm]).argmax(1) != y)[clean_ok].all(), norm
    fab_linf = flat_norm(x_adv["linf"] - x, "linf")[clean_ok]
    # PGD's bisection on [0, 0.5] resolves 0.5 / 2^7 = 0.004.
    pgd_linf = minimal_eps(small_cnn, x, y, attack="pgd", eps_max=0.5)[clean_ok]
    assert torch.isfinite(pgd_linf).all()
    assert float(fab_linf.median()) <= 1.1 * float(pgd_linf.median())
    assert (fab_linf <= 1.1 * pgd_linf).float().mean() >= 0.8
    fab_l2 = flat_norm(x_adv["l2"] - x, "l2")[clean_ok]
    deepfool_l2 = minimal_eps(small_cnn, x, y, attack="deepfool")[clean_ok]
    assert float(fab_l2.median()) <= 1.1 * float(deepfool_l2.median())


def test_fab_minimal_eps_is_the_perturbation_norm(small_cnn, cnn_run):
    from robust_core.device import channels_last_copy

    x, y, clean_ok, _ = cnn_run
    min_eps = minimal_eps(small_cnn, x, y, attack="fab")
    # minimal_eps attacks a channels-last copy (the same network up to float rounding, which FAB's path can follow).
    direct = fab(channels_last_copy(small_cnn), x, y, norm="linf")
    assert torch.allclose(min_eps[clean_ok], flat_norm(direct - x, "linf")[clean_ok], atol=1e-6)
    assert (min_eps[~clean_ok] == 0).all()


@pytest.mark.parametrize("norm", NORMS)
def test_fab_returns_images_it_cannot_break_within_eps_unchanged(norm):
    model, x, y, _, _ = five_class_linear()
    free = fab(model, x, y, norm=norm)
    needed = flat_norm(free - x, norm)
    eps = float(needed.median())
    budgeted = fab(model, x, y, norm=norm, eps=eps)
    over = needed > eps
    assert 0 < over.sum() < len(x)
    assert torch.equal(budgeted[over], x[over])
    assert torch.equal(budgeted[~over], free[~over])  # the budget does not change the search, only what is kept
    assert float(flat_norm(budgeted - x, norm).max()) <= eps * (1 + 1e-6)


def test_images_already_misclassified_or_on_target_come_back_unchanged():
    model, x, y, _, _ = five_class_linear()
    wrong = (y + 2) % 5
    assert torch.equal(fab(model, x, wrong, norm="l2"), x)
    assert torch.equal(fab(model, x, y, norm="l2", targeted=True, target=y), x)
    mixed = y.clone()
    mixed[:5] = wrong[:5]
    x_adv = fab(model, x, mixed, norm="l2")
    assert torch.equal(x_adv[:5], x[:5]) and not torch.equal(x_adv[5:], x[5:])


def test_restarts_are_seeded_and_never_worse(small_cnn, mnist):
    x, y = mnist.test_x[:8], mnist.test_y[:8]
    once = flat_norm(fab(small_cnn, x, y, norm="l2", n_iter=20) - x, "l2")
    a = fab(small_cnn, x, y, norm="l2", n_iter=20, restarts=3, seed=0)
    assert torch.equal(a, fab(small_cnn, x, y, norm="l2", n_iter=20, restarts=3, seed=0))
    assert not torch.equal(a, fab(small_cnn, x, y, norm="l2", n_iter=20, restarts=3, seed=1))
    again = flat_norm(a - x, "l2")
    broken = once > 0
    assert (again[broken] <= once[broken]).all() and (again[broken] > 0).all()
    assert (again[broken] < once[broken]).any()


def test_fab_is_registered_in_three_norms():
    for name, norm, label in [("fab", "linf", "FAB · L∞"), ("fab_l2", "l2", "FAB · L2"), ("fab_l1", "l1", "FAB · L1")]:
        spec = ATTACKS[name]
        assert (spec.fn, spec.norm, spec.kind, spec.targeted, spec.defaults) == (fab, norm, "minimal", True,
                                                                                 {"norm": norm})
        assert spec.label == label and spec.paper == "Croce & Hein, ICML 2020"


def test_bad_parameters_are_refused_clearly():
    model, x, y, _, _ = five_class_linear(n=4)
    for kwargs, message in [({"norm": "l0"}, "norm"), ({"restarts": 0}, "restarts"), ({"n_iter": -1}, "n_iter"),
                            ({"beta": 0.0}, "beta"), ({"eta": 0.0}, "eta"), ({"alpha_max": 1.5}, "alpha_max"),
                            ({"targeted": True}, "target")]:
        with pytest.raises(ValueError, match=message):
            fab(model, x, y, **kwargs)


@pytest.mark.parametrize("norm", NORMS)
def test_fab_t_counts_any_misclassification_as_autoattack_does(norm):
    """AutoAttack's FAB-T (its reference records every iterate that leaves the true class): with
    any_misclassification the target only chooses the boundary. Every point it returns is misclassified, it breaks
    at least the images the strict targeted run breaks, and where the target's region is farther than another
    class's, it stops at the nearer misclassification."""
    model, x, y, gap, normal = five_class_linear(seed=1)
    target = (y + 1) % 5
    strict = fab(model, x, y, norm=norm, targeted=True, target=target)
    loose = fab(model, x, y, norm=norm, targeted=True, target=target, any_misclassification=True)
    strict_hit = model(strict).argmax(1) == target
    loose_left = model(loose).argmax(1) != y
    assert loose_left[strict_hit].all()
    moved = flat_norm(loose - x, norm) > 0
    assert (loose_left | ~moved).all()
    # Paths differ (a point pulled back at another class's boundary), so per image it is not always smaller; overall
    # it is.
    assert flat_norm(loose - x, norm)[strict_hit].median() <= 1.02 * flat_norm(strict - x, norm)[strict_hit].median()
    with pytest.raises(ValueError, match="targeted"):
        fab(model, x, y, norm=norm, any_misclassification=True)
