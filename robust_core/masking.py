"""Gradient masking read from an attack comparison: the catastrophic-overfitting signature and its warnings.

The Attack page's comparison, sweeps' warnings and reports/deepdefense.md read these (through
``robust_core.evaluation``, which re-exports them). Curves are accuracies (shares) on one eps grid, keyed by the
attack's name; any other key is a transfer curve (examples crafted on another model,
:func:`robust_core.evaluation.transfer_key`).
"""
from __future__ import annotations

from collections.abc import Sequence

from .attacks import ATTACKS, get_attack


MASKING_SECTION = "Gradient masking and catastrophic overfitting"
# Shown beside the warning on the Attack page and written into reports/deepdefense.md (one text, two places).
MASKING_EXPLANATION = (
    "A model trained with single-step FGSM at a large ε (here ε = 0.3) can learn to make its loss flat or misleading "
    "right around each image: the one gradient step FGSM takes then points nowhere useful, so FGSM accuracy stays "
    "high while iterative attacks, which take many small steps and follow the loss around its bends (PGD, APGD), "
    "break almost every image. This is **catastrophic overfitting** (Wong, Rice & Kolter 2020; de Jorge et al. 2022):"
    " robustness to the training attack only, and it appears abruptly during training. It is one form of **gradient "
    "masking** (Athalye, Carlini & Wagner 2018): the local gradient no longer says where the loss rises. Its "
    "signature in the curves: while the iterative attacks fall to near zero, the single-step attack's accuracy "
    "stays high and flat as ε grows (here from half the ε where they reach zero to one and a half times it). A "
    "single-step attack that is only weaker than an iterative one, its "
    "accuracy falling as ε grows, is normal: one step finds less than forty. A real defence loses accuracy steadily "
    "and every attack falls to zero once ε is large enough to draw another digit. Trust the lowest curve (the worst "
    "case over attacks), and check with attacks that do not rely on the local gradient: Square (score-based) and "
    "transfer from another model."
)
# Training methods whose adversarial examples come from one gradient step (robust_core.training.METHODS' names): only a
# model trained with one of these "resists the attack it was trained on" when FGSM is masked.
SINGLE_STEP_TRAINING = frozenset({"fgsm_at", "fgsm_rs_at", "n_fgsm_at"})


def training_method_of(meta: dict | None) -> str | None:
    """The training method a stored model's metadata names (``meta["config"]["method"]``), or None when unknown."""
    config = (meta or {}).get("config")
    method = config.get("method") if isinstance(config, dict) else None
    return method if isinstance(method, str) and method else None


def _iterative_attacks(accuracy_by_attack: dict[str, list[float]]) -> list[str]:
    # Everything that is not one step: iterative white-box (PGD, APGD), score-based (Square) and transfer attacks.
    return [a for a in accuracy_by_attack
            if a not in ATTACKS or not ATTACKS[a].single_step and ATTACKS[a].kind in ("gradient", "score")]


def _single_step_attacks(accuracy_by_attack: dict[str, list[float]]) -> list[str]:
    return [a for a in accuracy_by_attack if a in ATTACKS and ATTACKS[a].single_step]


def _weaker_kind(attack: str) -> str | None:
    """How a curve that should not beat a white-box iterative attack is named in a warning (None: it may)."""
    if attack not in ATTACKS:
        return "transfer attack (crafted on another model)"
    spec = ATTACKS[attack]
    if spec.kind == "score":
        return f"black-box {spec.short_title} attack"
    return f"single-step {spec.short_title}" if spec.single_step else None


def single_step_masking(accuracy_by_attack: dict[str, list[float]], eps_grid: Sequence[float], *,
                        gap: float = 0.2, near_zero: float = 0.05, high: float = 0.5, flat: float = 0.1,
                        window: tuple[float, float] = (0.5, 1.5)) -> list[dict]:
    """The catastrophic-overfitting signature, per single-step attack (FGSM) against the iterative ones.

    All of it must show: the lowest iterative accuracy reaches ``near_zero`` (a share) at some eps, ``zero_eps``; and
    over the eps from ``window[0]`` to ``window[1]`` times ``zero_eps`` (as far as the grid goes), where the
    iterative attacks fall to zero and stay there, the single-step accuracy stays at least ``high`` and never falls
    by ``flat`` or more (it may rise). Why: a single step that is only weaker falls as eps grows (the standard CNN:
    FGSM 92% at eps 0.09, 47% at 0.18 where PGD reaches 3%, 12% at 0.26); a masked one stays put (the FGSM-trained
    CNN: 94% at 0.1, 91% at 0.2 where APGD reaches 4%, 89% at 0.3). Returns one dict per attack that shows it:
    attack, strongest (the attack lowest where the gap is widest), eps, single_step and strongest accuracy there, gap,
    first_eps (where the gap first exceeds ``gap``), zero_eps, from_eps and until_eps (the window measured), plateau
    (the single step's lowest and highest accuracy over it), flat (True).
    """
    iterative = _iterative_attacks(accuracy_by_attack)
    eps = [float(e) for e in eps_grid]
    found = []
    for single in _single_step_attacks(accuracy_by_attack):
        if not iterative:
            break
        single_acc = [float(v) for v in accuracy_by_attack[single]]
        lowest = [min((float(accuracy_by_attack[a][i]), a) for a in iterative) for i in range(len(eps))]
        zero = next((i for i in range(len(eps)) if eps[i] > 0 and lowest[i][0] <= near_zero), None)
        if zero is None:
            continue
        span = [i for i in range(len(eps))
                if window[0] * eps[zero] - 1e-9 <= eps[i] <= window[1] * eps[zero] + 1e-9]
        values = [single_acc[i] for i in span]
        largest_fall = max(values[k] - min(values[k:]) for k in range(len(values)))
        if min(values) < high or largest_fall >= flat:
            continue
        gaps = [single_acc[i] - lowest[i][0] for i in range(len(eps))]
        widest = max(range(len(eps)), key=lambda i: gaps[i])
        first = next(i for i, g in enumerate(gaps) if g > gap)  # at zero_eps the gap is at least high - near_zero
        found.append({"attack": single, "strongest": lowest[widest][1], "eps": eps[widest],
                      "single_step": single_acc[widest], "strongest_accuracy": lowest[widest][0], "gap": gaps[widest],
                      "first_eps": eps[first], "zero_eps": eps[zero], "from_eps": eps[span[0]],
                      "until_eps": eps[span[-1]], "plateau": (min(values), max(values)), "flat": True})
    return found


def _title(attack: str) -> str:
    return get_attack(attack).title if attack in ATTACKS else "a transfer attack"


def _masking_warning(m: dict, training_method: str | None) -> str:
    from .training import METHOD_TITLES

    lo, hi = m["plateau"]
    curves = (f"{_title(m['attack'])} leaves {100 * m['single_step']:.1f}% accuracy at ε = {m['eps']:g} where "
              f"{_title(m['strongest'])} leaves {100 * m['strongest_accuracy']:.1f}%, and stays flat, between "
              f"{100 * lo:.1f}% and {100 * hi:.1f}% from ε = {m['from_eps']:g} to {m['until_eps']:g}, while the "
              f"iterative attacks fall to near zero (by ε = {m['zero_eps']:g}).")
    if training_method in SINGLE_STEP_TRAINING:
        head = "Gradient masking: catastrophic overfitting."
        meaning = (f"This model was trained with {METHOD_TITLES.get(training_method, training_method)}, a single-step "
                   "attack, and the single gradient step is misled: the model resists the attack it was trained on, "
                   "not small perturbations.")
    elif training_method in METHOD_TITLES:
        head = "Gradient masking: a misled single-step attack."
        meaning = (f"The model's training ({METHOD_TITLES[training_method]}) used no single-step attack, yet the "
                   "single gradient step is misled: the model resists the single-step attack, not small perturbations.")
    else:  # an uploaded or external model: its training is not known
        head = "Gradient masking: the signature of catastrophic overfitting."
        meaning = ("The single gradient step is misled: the model resists the single-step attack, not small "
                   "perturbations.")
    return (f"**{head}** {curves} {meaning} Trust the lower curve. See “{MASKING_SECTION}” below and in "
            "reports/deepdefense.md.")


def attack_comparison_warnings(accuracy_by_attack: dict[str, list[float]], eps_grid: Sequence[float], *,
                               training_method: str | None = None) -> list[str]:
    """Warnings from several attacks on one model: a weaker attack beating a stronger one, and the catastrophic-
    overfitting signature (:func:`single_step_masking`), both signal gradient masking.

    ``training_method`` is the model's (:func:`training_method_of`): only a single-step method (FGSM-AT and its
    variants, :data:`SINGLE_STEP_TRAINING`) makes the warning say the model resists "the attack it was trained on";
    None (unknown, an external model) says it resists the single-step attack. A single-step attack that is only weaker
    is no warning: see :func:`attack_comparison_notes`."""
    warnings = [_masking_warning(m, training_method) for m in single_step_masking(accuracy_by_attack, eps_grid)]
    white_box = [a for a in accuracy_by_attack
                 if a in ATTACKS and ATTACKS[a].kind == "gradient" and not ATTACKS[a].single_step]
    for weak in [a for a in accuracy_by_attack if _weaker_kind(a) is not None]:
        for strong in white_box:
            gaps = [(e, w, s) for e, w, s in zip(eps_grid, accuracy_by_attack[weak], accuracy_by_attack[strong])
                    if w < s - 0.02]
            if gaps:
                e, w, s = max(gaps, key=lambda g: g[2] - g[1])
                warnings.append(f"The {_weaker_kind(weak)} beats {get_attack(strong).title} at ε = {e:g} "
                                f"({100 * w:.1f}% vs {100 * s:.1f}% accuracy): the gradient attack is misled, the "
                                "model masks its gradients. Trust the lower number.")
    return warnings


def attack_comparison_notes(accuracy_by_attack: dict[str, list[float]], eps_grid: Sequence[float], *,
                            gap: float = 0.2, flat: float = 0.1) -> list[str]:
    """Neutral notes, not warnings: a single-step attack more than ``gap`` above the iterative ones without the
    masking signature (:func:`single_step_masking`) is a weaker attack, as expected of one gradient step. The note
    says how its curve goes on from where the gap opens: falling (by ``flat`` or more), or flat while the iterative
    attacks never reach near zero (then more ε or Square would tell)."""
    iterative = _iterative_attacks(accuracy_by_attack)
    masked = {m["attack"] for m in single_step_masking(accuracy_by_attack, eps_grid)}
    eps = [float(e) for e in eps_grid]
    notes = []
    for single in [a for a in _single_step_attacks(accuracy_by_attack) if a not in masked]:
        if not iterative:
            break
        acc = [float(v) for v in accuracy_by_attack[single]]
        lowest = [min((float(accuracy_by_attack[a][i]), a) for a in iterative) for i in range(len(eps))]
        gaps = [acc[i] - lowest[i][0] for i in range(len(eps))]
        widest = max(range(len(eps)), key=lambda i: gaps[i])
        if gaps[widest] <= gap:
            continue
        first = next(i for i, g in enumerate(gaps) if g > gap)
        after = min(acc[first:])
        if acc[first] - after >= flat:
            shape = (f"Its curve falls as ε grows ({100 * acc[first]:.1f}% at ε = {eps[first]:g}, "
                     f"{100 * acc[-1]:.1f}% at ε = {eps[-1]:g}), not the flat curve of catastrophic overfitting.")
        else:
            shape = (f"Its curve stays within {100 * flat:.0f} points from ε = {eps[first]:g} to {eps[-1]:g}, but the "
                     "measured ε does not show it flat where the iterative attacks are near zero: no catastrophic-"
                     "overfitting signature; a larger ε or the Square attack would tell more.")
        notes.append(f"{_title(single)} leaves {100 * acc[widest]:.1f}% accuracy at ε = {eps[widest]:g} where "
                     f"{_title(lowest[widest][1])} leaves {100 * lowest[widest][0]:.1f}%: one gradient step is a "
                     f"weaker attack than many, as expected. {shape} The lower curve is the model's robustness.")
    return notes


__all__ = ["MASKING_EXPLANATION", "MASKING_SECTION", "SINGLE_STEP_TRAINING", "attack_comparison_notes",
           "attack_comparison_warnings", "single_step_masking", "training_method_of"]
