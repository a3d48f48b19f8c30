"""The command-line flags of a :class:`TrainConfig`, defined once: ``python -m robust_core.train`` and the sweep's
``train`` mode take them, and :func:`train_command` writes them back (the command stored with every trained model)."""
from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Collection
from typing import Any

from .config import OPTIMIZERS, SCHEDULES, TrainConfig

JSON_FIELDS = ("arch_kwargs", "method_kwargs")  # given on the command line as JSON objects


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _arguments() -> dict[str, dict[str, Any]]:
    """Per TrainConfig field a command line sets: argparse's keywords for its flag (``--`` + the field's name with
    dashes), ``aliases`` other names of it."""
    from ..data import DATASETS
    from ..models import ARCHITECTURES
    from .losses import TRAINING_METHODS

    return {
        "dataset": {"choices": sorted(DATASETS)},
        "arch": {"choices": sorted(ARCHITECTURES)},
        "arch_kwargs": {"help": "JSON object of architecture arguments"},
        "method": {"choices": sorted(TRAINING_METHODS)},
        "method_kwargs": {"help": "JSON object of training-method arguments"},
        "optimizer": {"choices": OPTIMIZERS},
        "lr": {"type": float},
        "momentum": {"type": float},
        "weight_decay": {"type": float},
        "schedule": {"choices": SCHEDULES},
        "epochs": {"type": int},
        "batch_size": {"type": int},
        "dropout": {"type": float},
        "label_smoothing": {"type": float},
        "train_subset": {"type": int, "aliases": ("--n-train",), "help": "train on the first N training images only"},
        "seed": {"type": int},
    }


def add_training_arguments(parser: argparse.ArgumentParser, *, exclude: Collection[str] = (),
                           defaults: bool | Collection[str] = True,
                           help_overrides: dict[str, str] | None = None) -> None:
    """Add a flag for each TrainConfig field a command line sets, except the fields in ``exclude``.

    ``defaults``: True, each flag defaults to TrainConfig's value; a collection of fields, only those do, and a flag
    of another field that is not given is left out of the parsed arguments (a grid's base configuration then names
    what was given only). ``help_overrides``: field -> help text."""
    d = TrainConfig()
    for field, spec in _arguments().items():
        if field in exclude:
            continue
        spec = dict(spec)
        aliases = spec.pop("aliases", ())
        if help_overrides and field in help_overrides:
            spec["help"] = help_overrides[field]
        default = ("{}" if field in JSON_FIELDS else getattr(d, field)) if defaults is True or field in defaults \
            else argparse.SUPPRESS
        parser.add_argument(_flag(field), *aliases, dest=field, default=default, **spec)


def parse_json_object(text: str, flag: str) -> dict:
    """A command-line flag's JSON object, or ValueError saying which flag is wrong and why."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, e.g. '{{\"hidden\": [256]}}'")
    return value


def config_fields_from_arguments(args: argparse.Namespace, *, exclude: Collection[str] = ()) -> dict[str, Any]:
    """The TrainConfig fields the parsed ``args`` hold (see :func:`add_training_arguments`; ``exclude``: the same as
    there), the JSON ones parsed (ValueError naming the flag when one is not a JSON object)."""
    fields = {}
    for field in _arguments():
        if field not in exclude and hasattr(args, field):
            value = getattr(args, field)
            fields[field] = parse_json_object(value, _flag(field)) if field in JSON_FIELDS else value
    return fields


def config_from_arguments(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the parsed ``args`` describe (ValueError for a bad value)."""
    return TrainConfig(**config_fields_from_arguments(args))


def train_command(config: TrainConfig) -> str:
    """The ``python -m robust_core.train`` command that trains ``config``: the flags of the fields that differ from
    TrainConfig's defaults."""
    d, c = TrainConfig().to_dict(), config.to_dict()
    args = []
    for field in _arguments():
        if field not in JSON_FIELDS and c[field] != d[field]:
            args += [_flag(field), str(c[field])]
    for field in JSON_FIELDS:
        if c[field]:
            args += [_flag(field), json.dumps(c[field])]
    return "python -m robust_core.train " + shlex.join(args)


__all__ = ["add_training_arguments", "config_fields_from_arguments", "config_from_arguments", "parse_json_object",
           "train_command"]
