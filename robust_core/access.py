"""Lecture (audience) mode: who may change which model when a room shares one server.

Off by default: the lab is a single-user tool and everyone may rename, delete and upload. With
``ROBUST_LECTURE_MODE=1`` (or ``streamlit run app.py -- --lecture``):

- the shipped models, and every model trained before or by the lecturer, cannot be renamed, deleted or
  overwritten by visitors;
- a visitor may rename and delete the models they trained themselves (their ``owner`` token is recorded
  in the model's metadata), and everyone can still see and use every model;
- training is limited (``STUDENT_LIMITS``: epochs and training images), and uploads are the lecturer's;
- the lecturer unlocks everything in their own browser session with the key set in ``ROBUST_LECTURER_KEY``
  (without that variable nobody is the lecturer in lecture mode, which is the safe default).
"""
from __future__ import annotations

import hmac
import os
import sys
from dataclasses import dataclass

LECTURE_MODE_ENV = "ROBUST_LECTURE_MODE"
LECTURER_KEY_ENV = "ROBUST_LECTURER_KEY"
# What a visitor may train in lecture mode: a few seconds to a minute on a shared 2-core server.
STUDENT_LIMITS = {"max_epochs": 3, "max_train_subset": 10000}


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
    return "Lecture mode: visitors train small models (" + " and ".join(problems) + ") so the server stays fast for the room."


__all__ = ["LECTURER_KEY_ENV", "LECTURE_MODE_ENV", "STUDENT_LIMITS", "Visitor", "can_modify", "is_lecturer_key",
           "lecture_mode", "training_limits_error", "visitor_id"]
