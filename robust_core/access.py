"""Lecture (audience) mode: who may change which model when a room shares one server.

Off by default: the lab is a single-user tool and everyone may rename, delete and upload. With
``ROBUST_LECTURE_MODE=1`` (or ``streamlit run app.py -- --lecture``):

- the shipped models, and every model trained before or by the lecturer, cannot be renamed, deleted or
  overwritten by visitors;
- a visitor may rename and delete the models they trained themselves (their ``owner`` token is recorded
  in the model's metadata), and everyone can still see and use every model;
- training is limited (``STUDENT_LIMITS``: epochs, training images, the network's size and cost), and so is the size
  of every other click's work (images of an attack curve, of AutoAttack, of attacked Confidence inputs); uploads
  are the lecturer's. :func:`work_error` checks a request before it is queued, whatever the widgets allowed, and the
  job runner's quotas (:mod:`robust_core.jobs`) bound how many jobs a visitor, and all visitors, may queue;
- the lecturer unlocks everything in their own browser session with the key set in ``ROBUST_LECTURER_KEY``
  (without that variable nobody is the lecturer in lecture mode, which is the safe default).
"""
from __future__ import annotations

import hmac
import os
import sys
from dataclasses import dataclass, field
from typing import Any

LECTURE_MODE_ENV = "ROBUST_LECTURE_MODE"
LECTURER_KEY_ENV = "ROBUST_LECTURER_KEY"
# What one visitor's click may ask of a shared 2-core server in lecture mode: each bounds a job to minutes of the long
# lane's single worker, which the whole room waits behind.
STUDENT_LIMITS = {
    "max_epochs": 3, "max_train_subset": 10000,
    # Madry et al.'s MNIST CNN (3.3 M) fits; the size an MLP reaches with a few 8,192-wide layers does not.
    "max_parameters": 5_000_000,
    "max_training_bytes": 2 * 2**30,  # estimated peak (robust_core.models.size): many such trainings may be queued
    # About five minutes at the ~50 GFLOP/s this CPU sustains: the seed CNN's PGD training (10 steps, 3 epochs of
    # 10,000 images) is 5.7e12, Madry's CNN's 3.0e13.
    "max_training_flops": 2e13,
    # Hidden layers of an MLP: each costs a fixed overhead per batch that FLOPs do not count (20,000 one-unit layers
    # took 2.5 s a batch); the Train page's default MLP has two.
    "max_hidden_layers": 16,
    # Test images of one per-image minimal-eps curve (the Attack page) and of the Confidence page's attacked inputs;
    # their attack strength stays at most the page's defaults (robust_core.evaluation.CURVE_ATTACK_PARAMS).
    "max_attack_images": 1000,
    # AutoAttack costs about a second per robust image on CPU (standard); the fast version about a third of that.
    "max_autoattack_images": {"autoattack_standard": 200, "autoattack_fast": 500},
    # A morph's image-gradients (steps x noisy copies x models or targets): the page's heaviest default, the smoothed
    # recipe toward all ten classes (200 x 16 x 10), takes seconds; the widgets' maximum (2,000 x 64 x 10) 400 times
    # more, in the short lane every student's morph waits in.
    "max_morph_gradients": 32_000,
}
# For everybody, single-user mode included: a training whose estimated memory exceeds this share of the machine's
# memory is refused before anything is built (it would swap the server to a halt, or be killed half-way).
MAX_MEMORY_SHARE = 0.5


def lecture_mode(argv: list[str] | None = None, environ=None) -> bool:
    """On when ``ROBUST_LECTURE_MODE`` is 1/true/yes/on, or when the app was started with ``-- --lecture``."""
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    return environ.get(LECTURE_MODE_ENV, "").strip().lower() in ("1", "true", "yes", "on") or "--lecture" in argv


def is_lecturer_key(key: str | None, environ=None) -> bool:
    """True when ``key`` equals ``ROBUST_LECTURER_KEY`` (constant-time compare); never without a configured key."""
    environ = os.environ if environ is None else environ
    expected = environ.get(LECTURER_KEY_ENV, "")
    return bool(expected) and bool(key) and hmac.compare_digest(key.encode(), expected.encode())


@dataclass(frozen=True)
class Visitor:
    owner: str  # this browser's public id (:func:`visitor_id` of its secret), recorded as ``owner`` of its models
    lecturer: bool = False


def visitor_id(secret: str) -> str:
    """The public id of a browser whose secret token is ``secret`` (kept in its cookie and session).

    Models record this id, never the secret: their metadata is downloadable with them, and knowing a model's
    ``owner`` must not let anyone act as its owner."""
    import hashlib

    return hashlib.sha256(f"robustness-lab visitor:{secret}".encode()).hexdigest()[:32]


# The ``owner`` recorded for a model the lecturer trained (with the key): no browser's id, so only the key unlocks it
# (a browser's id is 32 hex digits, never this word).
LECTURER_OWNER = "lecturer"


def model_owner(visitor: Visitor, *, lecture: bool = True) -> str:
    """The ``owner`` to record in the metadata of a model ``visitor`` trains: the lecturer's models are the lecturer's
    (:data:`LECTURER_OWNER`), not the browser's that held the key, which without it must not change them later.
    Outside lecture mode the one user is the lab's owner: what they train is not a visitor's when a lecture starts."""
    return LECTURER_OWNER if visitor.lecturer or not lecture else visitor.owner


def trained_by_visitor(meta: dict) -> bool:
    """Whether the model of ``meta`` is a visitor's: it records an ``owner`` that is not the lecturer. Shipped models,
    the lecturer's, and models saved before owners were recorded are not (pickers mark visitors' models, and a
    visitor's model is never another visitor's default)."""
    owner = meta.get("owner") if isinstance(meta, dict) else None
    return bool(owner) and owner != LECTURER_OWNER


def can_modify(meta: dict, visitor: Visitor, *, lecture: bool) -> tuple[bool, str]:
    """(allowed, reason) for renaming, deleting or overwriting the model whose metadata is ``meta``."""
    if not lecture:
        return True, "single-user mode"
    if visitor.lecturer:
        return True, "the lecturer may change every model"
    if meta.get("owner") and hmac.compare_digest(str(meta["owner"]), visitor.owner):
        return True, "you trained this model"
    return False, ("lecture mode: only the lecturer and the visitor who trained a model can rename or delete it "
                   "(this one is shipped, the lecturer's, or another visitor's)")


def training_limits_error(*, epochs: int, train_subset: int | None, lecture: bool, lecturer: bool) -> str | None:
    """Why a training request exceeds what a visitor may train in lecture mode, or None when it is allowed."""
    if not lecture or lecturer:
        return None
    problems = []
    if epochs > STUDENT_LIMITS["max_epochs"]:
        problems.append(f"at most {STUDENT_LIMITS['max_epochs']} epochs")
    if train_subset is None or train_subset > STUDENT_LIMITS["max_train_subset"]:
        problems.append(f"at most {STUDENT_LIMITS['max_train_subset']:,} training images")
    if not problems:
        return None
    return ("Lecture mode: visitors train small models (" + " and ".join(problems)
            + ") so the server stays fast for the room.")


@dataclass(frozen=True)
class Work:
    """What a job is asked to compute, for :func:`work_error` before it is queued.

    ``kind``: "training" (``config``, a :class:`robust_core.training.TrainConfig`), "minimal_eps" (a per-image
    minimal-eps curve or a transfer curve: ``images`` test images, ``attack`` with ``params``), "autoattack"
    (``images``, ``attack`` the version), "adversarial_inputs" (the Confidence page's attacked ``images``) or
    "morph" (``params["gradients"]``: steps x noisy copies x models or targets); any other kind (a photo view:
    bounded by its page's settings) is only held to the job quotas."""
    kind: str
    images: int = 0
    attack: str | None = None
    params: dict = field(default_factory=dict)
    config: Any = None


def machine_memory_bytes() -> int | None:
    """The memory this process may use: the machine's, or its container's limit when lower (None if unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    try:
        with open("/sys/fs/cgroup/memory.max") as limit:
            text = limit.read().strip()
        if text.isdigit():
            total = min(total or int(text), int(text))
    except OSError:
        pass
    return total


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def work_error(work: Work, *, lecture: bool, lecturer: bool, memory_bytes: int | None = None) -> str | None:
    """Why ``work`` may not be queued (a message for the page), or None when it may. Everybody is held to the
    machine's memory (``memory_bytes``, default :func:`machine_memory_bytes`); visitors of a lecture (not the
    lecturer) to :data:`STUDENT_LIMITS` too. Computed from the request alone: nothing is built."""
    if work.kind == "training":
        return _training_error(work.config, lecture=lecture, lecturer=lecturer, memory_bytes=memory_bytes)
    if not lecture or lecturer:
        return None
    if work.kind in ("minimal_eps", "adversarial_inputs") and work.images > STUDENT_LIMITS["max_attack_images"]:
        return (f"Lecture mode: visitors attack at most {STUDENT_LIMITS['max_attack_images']:,} images at a time "
                f"({work.images:,} asked), so the server stays fast for the room.")
    if work.kind == "minimal_eps":
        from .evaluation import CURVE_ATTACK_PARAMS

        defaults = CURVE_ATTACK_PARAMS.get(str(work.attack).split(":")[0], {})
        stronger = [f"{k} {work.params[k]} (at most {v})" for k, v in defaults.items()
                    if isinstance(v, (int, float)) and k in work.params and work.params[k] > v]
        if stronger:
            return ("Lecture mode: visitors run the attacks at the page's default strength or below: "
                    + ", ".join(stronger) + ".")
    if work.kind == "morph" and work.params.get("gradients", 0) > STUDENT_LIMITS["max_morph_gradients"]:
        return (f"Lecture mode: a visitor's morph computes at most {STUDENT_LIMITS['max_morph_gradients']:,} "
                f"image-gradients (steps × noisy copies × models or targets; {work.params['gradients']:,} asked): "
                "fewer steps or noisy copies, so the room's morphs stay quick.")
    if work.kind == "autoattack":
        caps = STUDENT_LIMITS["max_autoattack_images"]
        cap = caps.get(work.attack, min(caps.values()))
        if work.images > cap:
            return (f"Lecture mode: visitors run AutoAttack on at most {cap:,} images ({work.images:,} asked): it "
                    "takes about a second per robust image, and the room waits behind it.")
    return None


def _training_error(config, *, lecture: bool, lecturer: bool, memory_bytes: int | None) -> str | None:
    from .models import architecture
    from .models.size import (
        estimate_parameters,
        estimate_training_bytes,
        estimate_training_flops,
    )

    if config.external:
        return "A network the lab did not train is evaluated, not trained: register it, then attack it."
    try:
        needed = estimate_training_bytes(config)
        parameters, flops = estimate_parameters(config), estimate_training_flops(config)
    except ValueError as exc:
        return f"This network cannot be built: {exc}."
    total = machine_memory_bytes() if memory_bytes is None else memory_bytes
    if total and needed > MAX_MEMORY_SHARE * total:
        return (f"This network would need about {_gib(needed)} of memory to train (weights, gradients, optimiser state "
                f"and a batch: {parameters or 0:,} parameters), more than half of this server's {_gib(total)}. "
                "Choose fewer or narrower layers, or a smaller batch.")
    if not lecture or lecturer:
        return None
    fitted = architecture(config.arch).kind != "torch"
    limits = training_limits_error(epochs=1 if fitted else config.epochs, train_subset=config.train_subset,
                                   lecture=lecture, lecturer=lecturer)
    if limits:
        return limits
    if parameters is not None and parameters > STUDENT_LIMITS["max_parameters"]:
        return (f"Lecture mode: visitors train networks of at most {STUDENT_LIMITS['max_parameters']:,} parameters; "
                f"this one has {parameters:,}. Choose fewer or narrower layers.")
    if needed > STUDENT_LIMITS["max_training_bytes"]:
        return (f"Lecture mode: this training would need about {_gib(needed)} of memory; visitors have "
                f"{_gib(STUDENT_LIMITS['max_training_bytes'])}. Choose a smaller network or batch.")
    if flops > STUDENT_LIMITS["max_training_flops"]:
        minutes = flops / STUDENT_LIMITS["max_training_flops"] * 5
        return (f"Lecture mode: this training would take the server about {minutes:.0f} minutes, and the room waits "
                "behind it; visitors train for about 5. Choose fewer attack steps, epochs or images, or a smaller "
                "network.")
    hidden = (config.arch_kwargs or {}).get("hidden") or ()
    if len(hidden) > STUDENT_LIMITS["max_hidden_layers"]:
        return (f"Lecture mode: visitors train networks of at most {STUDENT_LIMITS['max_hidden_layers']} hidden "
                f"layers; this one has {len(hidden):,}.")
    return None


__all__ = ["LECTURER_KEY_ENV", "LECTURER_OWNER", "LECTURE_MODE_ENV", "MAX_MEMORY_SHARE", "STUDENT_LIMITS", "Visitor",
           "Work", "can_modify", "is_lecturer_key", "lecture_mode", "machine_memory_bytes", "model_owner",
           "trained_by_visitor", "training_limits_error", "visitor_id", "work_error"]
