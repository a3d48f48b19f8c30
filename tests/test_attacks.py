"""Attacks: invariants over the whole registry, hand-checked linear cases, and ordering on a CNN."""
import math

import pytest
import torch
from torch import nn

from robust_core.attacks import ATTACKS, apgd, deepfool, fgsm, flat_norm, pgd, square
from robust_core.attacks.gradient import _checkpoints
from robust_core.evaluation import accuracy_at, minimal_eps, robust_accuracy

EPS = {"linf": 0.1, "l2": 1.0, "l1": 10.0}
FAST = {"pgd": {"steps": 5}, "pgd_l2": {"steps": 5}, "apgd_ce": {"steps": 5}, "apgd_dlr": {"steps": 5},
        "apgd_t": {"steps": 3, "n_target_classes": 2}, "deepfool": {"steps": 10}, "deepfool_linf": {"steps": 10},
        "cw_l2": {"steps": 10, "binary_search_steps": 2}, "ead": {"steps": 10, "binary_search_steps": 2},
        "square": {"n_queries": 30}, "fab": {"n_iter": 10}, "fab_l2": {"n_iter": 10}, "fab_l1": {"n_iter": 10},
        "autoattack_standard": {"version": "fast"}}


@pytest.fixture(scope="module")
def cnn(small_cnn):
    return small_cnn


@pytest.fixture(scope="module")
def batch(mnist):
    return mnist.test_x[:16], mnist.test_y[:16]


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_keeps_the_contract(name, cnn, batch):
    spec = ATTACKS[name]
    x, y = batch
    eps = EPS[spec.norm]
    cnn.train()  # the attack must run in eval mode and give the model back in train mode
    for p in cnn.parameters():
        p.grad = None
    x_adv = spec(cnn, x, y, eps=eps, seed=0, **FAST[name]) if name in FAST else spec(cnn, x, y, eps=eps, seed=0)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float(flat_norm(x_adv - x, spec.norm).max()) <= eps + 1e-6 * max(1.0, eps)
    assert cnn.training
    assert all(p.grad is None for p in cnn.parameters())
    cnn.eval()
    if spec.targeted:
        x_t = spec(cnn, x, y, eps=eps, targeted=True, target=3, seed=0, **FAST.get(name, {}))
        assert float(flat_norm(x_t - x, spec.norm).max()) <= eps + 1e-6 * max(1.0, eps)


def _five_class_linear_problem():
    """A 5-class linear model on 4x4 images and 12 images it classifies as y, with a target (y + 1) % 5 for each:
    a budget of EPS moves any image across most of the model's boundaries."""
    w = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    model = Linear(w, -0.5 * w.sum(1))  # logits W (x - 0.5): grey images spread over the classes
    x = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.4 + 0.3
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, (y + 1) % 5


def _target_margin(model, x, target):
    """Per image: the target's logit minus the largest other one (> 0: the image reads as the target)."""
    with torch.no_grad():
        logits = model(x)
    return logits.gather(1, target[:, None])[:, 0] - logits.scatter(1, target[:, None], float("-inf")).amax(1)


# FAST, but EAD's step of 0.01 moves a pixel by at most 0.1 in FAST's 10 steps: 0.1 reaches the targets of the
# linear model.
TARGETED_RUN = {**FAST, "ead": {**FAST["ead"], "lr": 0.1}}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_takes_targeted_and_target_and_either_reaches_the_target_or_says_it_is_untargeted_only(name):
    """The contract's targeted=/target= reach every registered attack: one whose spec says ``targeted`` moves the
    images toward the target (more of them read as it, the target's margin grows), any other refuses with the
    ValueError its spec announces, never a TypeError."""
    spec = ATTACKS[name]
    model, x, y, target = _five_class_linear_problem()
    eps, params = EPS[spec.norm], TARGETED_RUN.get(name, {})
    untargeted = spec(model, x, y, eps=eps, targeted=False, target=None, seed=0, **params)
    assert untargeted.shape == x.shape
    with pytest.raises(ValueError, match="target"):  # a target without targeted=True is a mistake, said as one
        spec(model, x, y, eps=eps, target=target, seed=0, **params)
    if not spec.targeted:
        with pytest.raises(ValueError, match="untargeted only"):
            spec(model, x, y, eps=eps, targeted=True, target=target, seed=0, **params)
        return
    x_t = spec(model, x, y, eps=eps, targeted=True, target=target, seed=0, **params)
    assert float(flat_norm(x_t - x, spec.norm).max()) <= eps + 1e-6 * max(1.0, eps)
    before, after = _target_margin(model, x, target), _target_margin(model, x_t, target)
    assert (before < 0).all()  # no image reads as its target before the attack
    assert (after > 0).float().mean() >= 0.5, (after > 0).float().mean()
    assert after.mean() > before.mean()


def test_an_attack_run_through_its_spec_gets_the_spec_defaults_and_the_caller_overrides_them():
    """``ATTACKS[name](...)`` is how an attack runs with its defaults: APGD-DLR's function is apgd, whose own
    default loss is CE, so calling ``spec.fn`` would quietly run APGD-CE."""
    import dataclasses

    received = {}

    def record(model, x, y, **kwargs):
        received.update(kwargs)
        return x

    for name, spec in ATTACKS.items():
        received.clear()
        dataclasses.replace(spec, fn=record)(None, None, None, eps=0.1)
        assert received == {**spec.defaults, "eps": 0.1}, name
    received.clear()
    dataclasses.replace(ATTACKS["apgd_dlr"], fn=record)(None, None, None, eps=0.1, loss="ce")
    assert received["loss"] == "ce"
    # The real APGD-DLR: its spec's loss reaches apgd, and the DLR and CE runs differ on the same random start.
    model, x, y, _ = _five_class_linear_problem()
    kwargs = {"eps": 0.05, "steps": 5, "seed": 0}
    via_spec = ATTACKS["apgd_dlr"](model, x, y, **kwargs)
    assert torch.equal(via_spec, apgd(model, x, y, loss="dlr", **kwargs))
    assert not torch.equal(via_spec, ATTACKS["apgd_dlr"].fn(model, x, y, **kwargs))


def test_the_dlr_loss_refuses_a_model_with_fewer_classes_than_it_ranks():
    """DLR divides by the gap to the third logit (targeted: the mean of the third and fourth): with fewer classes
    there is no such logit, which is said as such, not an IndexError from deep inside a step."""
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    three = Linear(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), torch.zeros(3))
    y = three(x).argmax(1).detach()
    with pytest.raises(ValueError, match="at least 4 classes"):
        ATTACKS["apgd_dlr"](three, x, y, eps=0.1, steps=2, targeted=True, target=(y + 1) % 3)
    assert ATTACKS["apgd_dlr"](three, x, y, eps=0.1, steps=2).shape == x.shape  # untargeted needs 3
    two = Linear(torch.randn(2, 16, generator=torch.Generator().manual_seed(1)), torch.zeros(2))
    with pytest.raises(ValueError, match="at least 3 classes"):
        ATTACKS["apgd_dlr"](two, x, two(x).argmax(1).detach(), eps=0.1, steps=2)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_bad_inputs_are_refused_clearly(name, cnn, batch):
    spec = ATTACKS[name]
    x, y = batch
    with pytest.raises(ValueError, match="NaN"):
        spec(cnn, x.clone().fill_(float("nan")), y, eps=EPS[spec.norm])
    with pytest.raises(ValueError, match="larger than any"):
        spec(cnn, x, y, eps=1e6)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        spec(cnn, x * 255, y, eps=EPS[spec.norm])


class Linear(nn.Module):
    def __init__(self, weight, bias):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_fgsm_on_a_linear_model_moves_every_unclipped_pixel_by_eps_along_the_weight_difference():
    torch.manual_seed(0)
    w, b = torch.randn(2, 16), torch.zeros(2)
    model = Linear(w, b)
    x = torch.rand(8, 1, 4, 4) * 0.6 + 0.2  # away from 0 and 1: no clipping at eps 0.1
    y = torch.zeros(8, dtype=torch.long)
    x_adv = fgsm(model, x, y, eps=0.1)
    # d CE / d x for class 0 points along (w1 - w0) times a positive factor: the step is eps * sign(w1 - w0).
    expected = x + 0.1 * (w[1] - w[0]).sign().view(1, 1, 4, 4)
    assert torch.allclose(x_adv, expected, atol=1e-6)


def test_deepfool_on_a_binary_linear_classifier_finds_the_distance_to_the_hyperplane():
    torch.manual_seed(1)
    w = torch.randn(1, 64)
    model = Linear(torch.cat([torch.zeros(1, 64), w]), torch.tensor([0.0, -1.0]))  # f = w.x - 1
    x = torch.rand(10, 1, 8, 8) * 0.1 + 0.45
    logits = model(x)
    y = logits.argmax(1)
    distance = (x.flatten(1) @ w[0] - 1).abs() / w.norm()
    x_adv = deepfool(model, x, y, overshoot=0.0)
    assert (model(x_adv).argmax(1) != y).all()
    found = flat_norm(x_adv - x, "l2")
    assert torch.allclose(found, distance, rtol=1e-3, atol=1e-3)


def test_pgd_is_at_least_as_strong_as_fgsm_and_apgd_within_a_point(cnn, mnist):
    x, y = mnist.test_x[:200], mnist.test_y[:200]
    acc = {name: robust_accuracy(cnn, x, y, attack=name, eps_grid=[0.1], **kw)[0]
           for name, kw in {"fgsm": {}, "pgd": {"steps": 20}, "apgd_ce": {"steps": 20}}.items()}
    assert acc["pgd"] <= acc["fgsm"]
    assert acc["apgd_ce"] <= acc["pgd"] + 0.01
    assert acc["pgd"] < 0.9  # a non-robust model does fall


def test_targeted_attacks_hit_their_target(cnn, mnist):
    x, y = mnist.test_x[:20], mnist.test_y[:20]
    keep = y != 3
    x, y = x[keep], y[keep]
    for attack in (pgd, apgd):
        x_adv = attack(cnn, x, y, eps=0.3, steps=50, targeted=True, target=3)
        assert (cnn(x_adv).argmax(1) == 3).float().mean() >= 0.9, attack.__name__


def test_square_needs_no_gradient_and_still_breaks_the_cnn(cnn, mnist):
    x, y = mnist.test_x[:40], mnist.test_y[:40]
    x_adv = square(cnn, x, y, eps=0.3, n_queries=300)
    assert (cnn(x_adv).argmax(1) != y).float().mean() > 0.5


def test_attacks_are_deterministic_for_a_seed(cnn, batch):
    x, y = batch
    a = pgd(cnn, x, y, eps=0.1, steps=5, seed=7)
    assert torch.equal(a, pgd(cnn, x, y, eps=0.1, steps=5, seed=7))
    assert not torch.equal(a, pgd(cnn, x, y, eps=0.1, steps=5, seed=8))


@pytest.mark.parametrize("attack", ["pgd", "apgd_ce"])
def test_the_pass_size_changes_the_speed_not_the_result(attack, cnn, mnist):
    """Random starts are drawn for the whole batch before it is split into passes, and every example's trajectory
    depends on that example alone (eval mode): passes of 3 or of 64 images give the same adversarial examples."""
    x, y = mnist.test_x[:40], mnist.test_y[:40]
    kwargs = {"eps": 0.15, "steps": 6, "seed": 3}
    small = ATTACKS[attack](cnn, x, y, batch_size=3, **kwargs)
    large = ATTACKS[attack](cnn, x, y, batch_size=64, **kwargs)
    assert torch.allclose(small, large, atol=1e-5)
    assert torch.equal(cnn(small).argmax(1), cnn(large).argmax(1))


@pytest.mark.parametrize("attack,kwargs", [("square", {"eps": 0.15, "n_queries": 40}),
                                           ("fab", {"eps": 0.15, "n_iter": 5}),
                                           ("fab", {"norm": "l2", "n_iter": 5, "targeted": True, "target": 3}),
                                           ("fab", {"norm": "l2", "n_iter": 5}), ("deepfool", {"steps": 10})])
def test_square_fab_and_deepfool_query_in_passes_without_changing_the_result(attack, kwargs, cnn, mnist, monkeypatch):
    """Square's queries, FAB's runs and DeepFool's Jacobians go through the model in passes of attack_batch_size
    images (issue 16: one pass of hundreds of images made AutoAttack slower than the reference at 1,000 images); the
    random draws are made for all images at once, so passes of 3 or of 64 give the same adversarial examples."""
    import sys

    # The package's names fab and square are the functions: the modules are looked up by their full names.
    modules = [sys.modules[f"robust_core.attacks.{name}"] for name in ("fab", "square", "minimal")]
    x, y = mnist.test_x[:40], mnist.test_y[:40]
    results = []
    for size in (3, 64):
        for module in modules:
            monkeypatch.setattr(module, "attack_batch_size", lambda x, size=size: size)
        results.append(ATTACKS[attack](cnn, x, y, seed=5, **kwargs))
    assert torch.allclose(results[0], results[1], atol=1e-5)
    assert torch.equal(cnn(results[0]).argmax(1), cnn(results[1]).argmax(1))
    assert not torch.equal(results[0], x)  # the attack did something to compare


@pytest.mark.parametrize("attack", ["pgd", "pgd_l2", "apgd_ce", "square"])
def test_one_eps_per_example_keeps_each_example_in_its_own_ball(attack, cnn, mnist):
    """minimal_eps' bisection attacks every bracket in one call, each example at its own eps."""
    x, y = mnist.test_x[:12], mnist.test_y[:12]
    spec = ATTACKS[attack]
    top = EPS[spec.norm]
    eps = torch.linspace(0.1, 1.0, len(x)) * top
    kwargs = {"n_queries": 40} if attack == "square" else {"steps": 5}
    x_adv = spec(cnn, x, y, eps=eps, seed=0, **kwargs)
    assert (flat_norm(x_adv - x, spec.norm) <= eps * (1 + 1e-5) + 1e-6).all()
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    # The same eps for everyone, as a tensor or as a number: the same attack.
    same = spec(cnn, x, y, eps=torch.full((len(x),), top), seed=0, **kwargs)
    assert torch.allclose(same, spec(cnn, x, y, eps=top, seed=0, **kwargs), atol=1e-5)
    with pytest.raises(ValueError, match="per-example eps"):
        spec(cnn, x, y, eps=torch.full((3,), top), seed=0, **kwargs)


def test_the_pass_size_follows_the_device_and_the_image_size():
    from robust_core.attacks._common import attack_batch_size

    mnist_cpu = attack_batch_size(torch.zeros(2, 1, 28, 28))
    photo_cpu = attack_batch_size(torch.zeros(2, 3, 224, 224))
    mnist_gpu = attack_batch_size(torch.zeros(2, 1, 28, 28, device="meta"))  # any accelerator: no GPU needed here
    photo_gpu = attack_batch_size(torch.zeros(2, 3, 224, 224, device="meta"))
    assert photo_cpu < mnist_cpu <= 256 and photo_gpu < mnist_gpu
    assert mnist_gpu > mnist_cpu and photo_gpu > photo_cpu


def test_evaluations_leave_the_model_as_it_was(cnn, mnist):
    """robust_accuracy and minimal_eps attack a channels-last copy: the caller's weights keep their layout (a
    non-contiguous tensor could not be saved), their values and their requires_grad."""
    x, y = mnist.test_x[:20], mnist.test_y[:20]
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    robust_accuracy(cnn, x, y, attack="pgd", eps_grid=[0.1], steps=3)
    minimal_eps(cnn, x, y, attack="pgd", eps_max=0.3, bisection_steps=2, steps=3)
    for k, v in cnn.state_dict().items():
        assert v.is_contiguous() and torch.equal(v, before[k])
    assert all(p.requires_grad for p in cnn.parameters())


def test_minimal_eps_lookup_agrees_with_direct_evaluation(cnn, mnist):
    x, y = mnist.test_x[:100], mnist.test_y[:100]
    min_eps = minimal_eps(cnn, x, y, attack="pgd", eps_max=0.3, bisection_steps=5, steps=20)
    assert (min_eps >= 0).all()
    for eps in (0.05, 0.15, 0.25):
        lookup = float(accuracy_at(min_eps, [eps])[0])
        direct = robust_accuracy(cnn, x, y, attack="pgd", eps_grid=[eps], steps=20)[0]
        assert abs(lookup - direct) <= 0.06, (eps, lookup, direct)


def test_minimal_eps_from_deepfool_is_the_perturbation_norm(cnn, mnist):
    x, y = mnist.test_x[:30], mnist.test_y[:30]
    min_eps = minimal_eps(cnn, x, y, attack="deepfool")
    x_adv = deepfool(cnn, x, y)
    clean_ok = cnn(x).argmax(1) == y
    assert torch.allclose(min_eps[clean_ok], flat_norm(x_adv - x, "l2")[clean_ok], atol=1e-5)
    assert (min_eps[~clean_ok] == 0).all()
    assert math.isclose(float(accuracy_at(min_eps, [0.0])[0]), float(clean_ok.float().mean()))


def test_fgsm_minimal_eps_is_the_best_of_its_grid(cnn, mnist):
    """The FGSM lookup counts an image broken once any eps up to the slider's breaks it: never above direct FGSM."""
    x, y = mnist.test_x[:200], mnist.test_y[:200]
    min_eps = minimal_eps(cnn, x, y, attack="fgsm", eps_max=0.3, grid_points=30)
    for eps in (0.05, 0.1, 0.2, 0.3):
        lookup = float(accuracy_at(min_eps, [eps])[0])
        direct = robust_accuracy(cnn, x, y, attack="fgsm", eps_grid=[eps])[0]
        assert lookup <= direct + 1e-6 and direct - lookup <= 0.05, (eps, lookup, direct)


def test_targeted_minimal_eps_makes_the_image_read_as_the_target(cnn, mnist):
    x, y = mnist.test_x[:12], mnist.test_y[:12]
    target = (y + 1) % 10
    values, x_adv = minimal_eps(cnn, x, y, attack="pgd", eps_max=0.5, target=target, steps=10, return_adversarial=True)
    untargeted = minimal_eps(cnn, x, y, attack="pgd", eps_max=0.5, steps=10)
    finite = torch.isfinite(values) & (values > 0)
    assert finite.sum() >= 9
    # The search's witnesses, not a replay (another random start need not find the example again): each lies within
    # its eps and reads as the target. The search judged these very tensors in another batch, so a verdict may differ
    # only where the margin is within float32 rounding of the logits (batch composition changes the kernels' sums).
    assert (flat_norm(x_adv - x, "linf")[finite] <= values[finite] + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        logits = cnn(x_adv[finite])
    t = target[finite]
    others = logits.scatter(1, t[:, None], float("-inf")).amax(1)
    margin = logits.gather(1, t[:, None])[:, 0] - others
    rounding = 1e-5 * logits.abs().amax(1).clamp_min(1.0)
    assert (margin > -rounding).all(), margin
    assert torch.equal(x_adv[~finite], x[~finite])
    # Reaching one chosen class is harder than leaving the true one. Exact minima obey it image by image; two searches'
    # upper bounds need not (a random start can land either side), so the claim is on their medians, which differ by
    # far more than one image's search noise (0.24 against 0.14 on this CNN).
    both = finite & torch.isfinite(untargeted)
    assert values[both].median() > untargeted[both].median() + 2 * 0.5 / 2**7
    with pytest.raises(ValueError, match="targeted"):
        minimal_eps(cnn, x, y, attack="deepfool", target=3)


def test_minimal_eps_witnesses_set_each_eps_for_every_kind_of_search(cnn, mnist):
    """FGSM's grid, PGD's bisection and DeepFool's minimal norm each return the example that set each eps."""
    x, y = mnist.test_x[:8], mnist.test_y[:8]
    for attack, kwargs in (("fgsm", {}), ("pgd", {"steps": 5}), ("deepfool", {})):
        values, x_adv = minimal_eps(cnn, x, y, attack=attack, eps_max=0.5 if attack != "deepfool" else 5.0,
                                    return_adversarial=True, **kwargs)
        norm = "l2" if attack == "deepfool" else "linf"
        finite = torch.isfinite(values) & (values > 0)
        assert finite.any(), attack
        assert (flat_norm(x_adv - x, norm)[finite] <= values[finite] * (1 + 1e-5) + 1e-6).all(), attack
        with torch.no_grad():
            logits = cnn(x_adv[finite])
        true = logits.gather(1, y[finite][:, None])[:, 0]
        margin = logits.scatter(1, y[finite][:, None], float("-inf")).amax(1) - true
        assert (margin > -1e-5 * logits.abs().amax(1).clamp_min(1.0)).all(), attack
        assert torch.equal(values, minimal_eps(cnn, x, y, attack=attack, eps_max=0.5 if attack != "deepfool" else 5.0,
                                               **kwargs)), attack  # the witnesses change nothing else


class CountingModel(nn.Module):
    """Counts the images each forward pass sees."""

    def __init__(self, model):
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x):
        self.images += len(x)
        return self.model(x)


def test_apgd_steps_only_unbroken_examples_with_one_pass_per_step(cnn, mnist):
    x, y = mnist.test_x[:100], mnist.test_y[:100]
    steps = 20
    counted = CountingModel(cnn)
    x_adv = apgd(counted, x, y, eps=0.3, steps=steps)
    fooled = cnn(x_adv).argmax(1) != y
    assert fooled.float().mean() > 0.9
    # One forward per live example per step (plus the start, the first check and the checkpoint
    # restarts): far below the n * steps of stepping every example to the end, and never above
    # n * (steps + 1) + the restart passes.
    assert counted.images < 0.5 * len(x) * steps
    # On a robust-looking budget (eps tiny, almost nothing breaks) the count is about n per step, not 2n.
    counted.images = 0
    apgd(counted, x, y, eps=1e-3, steps=steps)
    assert counted.images <= len(x) * (steps + 1 + len(_checkpoints(steps))) + len(x)


def test_every_attack_label_names_its_norm_once():
    """Issue 13, item 10: the picker read "PGD (L-inf) · LINF"."""
    from robust_core.attacks import ATTACKS, NORM_SYMBOLS

    for spec in ATTACKS.values():
        assert spec.label.count(NORM_SYMBOLS[spec.norm]) == 1 and "L-inf" not in spec.label and "LINF" not in spec.label
    assert ATTACKS["pgd"].label == "PGD · L∞" and ATTACKS["pgd_l2"].label == "PGD · L2"


def test_every_spec_says_what_it_costs_what_a_user_may_tune_and_what_it_does():
    """What code needs to know about an attack is on its spec, never read from its name or its docstring."""
    from robust_core.attacks import stage_cost
    from robust_core.attacks.autoattack import VERSIONS
    from robust_core.evaluation import CURVE_ATTACK_PARAMS

    for name, spec in ATTACKS.items():
        assert spec.summary and spec.caption.count(spec.paper) == 1 and "``" not in spec.caption, name
        for tunable in spec.tunable:  # a keyword of the attack, whose curves' default lies in its range
            assert tunable.name in spec.resolve(), (name, tunable.name)
            assert tunable.low <= CURVE_ATTACK_PARAMS[name][tunable.name] <= tunable.high, (name, tunable.name)
        cost = spec.cost()
        assert 1 <= cost.forwards <= cost.work, name
    # A larger budget costs more; restarts and targets multiply the runs; FGSM's grid costs one pass per point.
    for name, budget in [("pgd", "steps"), ("apgd_ce", "steps"), ("square", "n_queries"), ("cw_l2", "steps"),
                         ("ead", "steps"), ("deepfool", "steps"), ("fab", "n_iter")]:
        assert ATTACKS[name].cost({budget: 20}).forwards > ATTACKS[name].cost({budget: 10}).forwards, name
    assert ATTACKS["pgd"].cost({"restarts": 2}).gradients == 2 * ATTACKS["pgd"].cost().gradients
    assert ATTACKS["apgd_t"].cost({"n_target_classes": 3}).gradients == 3 * ATTACKS["apgd_ce"].cost().gradients
    assert ATTACKS["fgsm"].cost(grid_points=50).forwards == 51 and ATTACKS["square"].cost().gradients == 0
    # AutoAttack costs what its stages cost, FAB-T as many FAB runs as it has targets.
    for version in ("standard", "fast"):
        chain = ATTACKS[f"autoattack_{version}"].cost()
        assert chain.work == sum(stage_cost(stage, params).work for stage, params in VERSIONS[version])
    assert stage_cost("fab_t", {"n_iter": 10, "n_target_classes": 3}).gradients == 30
