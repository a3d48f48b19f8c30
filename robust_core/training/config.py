"""A training configuration and its hash: the key under which the store caches a model."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

OPTIMIZERS = ("adam", "sgd", "sgd_momentum")
SCHEDULES = ("constant", "onecycle", "cosine", "step")
# "auto": bf16 mixed precision where the hardware computes it natively (CUDA, or a CPU with
# AVX-512 BF16 / AMX), float32 elsewhere (emulated bf16 would be slower, not faster).
PRECISIONS = ("auto", "fp32", "bf16")
# The architecture and the method of a network the lab did not train (robust_core.external): its arch_kwargs name the
# code that builds it and the content hash of its weights, so its id (the config's hash) is keyed by that hash.
EXTERNAL = "external"
EXTERNAL_KEYS = ("factory", "kwargs", "weights_sha256")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model. Two equal configs give the same model (on CPU).

    The defaults are the project's MNIST recipe for the seed CNN: 2 epochs of Adam with a
    one-cycle learning rate (peak 6e-3) at batch 256, in bf16 mixed precision where the hardware has it,
    which reaches 99% test accuracy (see README, benchmarks/train_speed.py).
    """

    dataset: str = "mnist"
    arch: str = "cnn"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    method: str = "standard"
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 6e-3  # peak learning rate for "onecycle"
    momentum: float = 0.9  # used by "sgd_momentum" (Nesterov)
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    epochs: int = 2
    batch_size: int = 256
    dropout: float = 0.0
    label_smoothing: float = 0.0
    train_subset: int | None = None  # first N images of the (fixed) training split; None = all
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self):
        from ..data import DATASETS
        from ..models import ARCHITECTURES
        from .losses import METHODS, TRAINING_METHODS, method_kwargs_problems

        problems = []
        if EXTERNAL in (self.arch, self.method):
            problems += _external_problems(self)
        choices = {"dataset": sorted(DATASETS), "arch": sorted(ARCHITECTURES), "method": sorted(TRAINING_METHODS),
                   "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed and not (name in ("arch", "method") and self.arch == EXTERNAL
                                                           and self.method == EXTERNAL):
                problems.append(f"{name} {getattr(self, name)!r} is not one of {allowed}")
        if not (isinstance(self.epochs, int) and 1 <= self.epochs <= 1000):
            problems.append(f"epochs must be an integer in 1..1000, not {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 65536):
            problems.append(f"batch_size must be an integer in 1..65536, not {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr <= 10):  # also rejects NaN
            problems.append(f"lr must be a number in (0, 10], not {self.lr!r}")
        if not (0 <= self.weight_decay <= 1):
            problems.append(f"weight_decay must be in [0, 1], not {self.weight_decay!r}")
        if not (0 <= self.dropout < 1):
            problems.append(f"dropout must be in [0, 1), not {self.dropout!r}")
        if not (0 <= self.label_smoothing < 1):
            problems.append(f"label_smoothing must be in [0, 1), not {self.label_smoothing!r}")
        if not (0 <= self.momentum < 1):
            problems.append(f"momentum must be in [0, 1), not {self.momentum!r}")
        if self.train_subset is not None and not (isinstance(self.train_subset, int) and self.train_subset >= 10):
            problems.append(f"train_subset must be None or an integer >= 10, not {self.train_subset!r}")
        problems += method_kwargs_problems(self.method, self.method_kwargs)
        if problems:
            raise ValueError("Invalid training configuration: " + "; ".join(problems))
        if self.method in METHODS:
            # Store every argument, defaults included: the hash (the model's id) then names the exact recipe,
            # even if a default changes later.
            object.__setattr__(self, "method_kwargs", {**METHODS[self.method].defaults, **self.method_kwargs})

    @property
    def external(self) -> bool:
        """Whether this describes a network the lab did not train (robust_core.external)."""
        return self.arch == EXTERNAL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown training configuration keys: {sorted(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "TrainConfig":
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def config_hash(self) -> str:
        """16 hex digits of SHA-256 over the canonical JSON of the config: the store's model id."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _external_problems(config: TrainConfig) -> list[str]:
    """What is wrong with the description of an external network: both arch and method "external", and arch_kwargs
    naming a factory (package.module:function), its keyword arguments and the weights' SHA-256."""
    from ..external.loading import FACTORY_PATTERN

    if config.arch != EXTERNAL or config.method != EXTERNAL:
        return [f"an external network has arch and method {EXTERNAL!r}, not {config.arch!r} and {config.method!r}"]
    kwargs = config.arch_kwargs
    if not isinstance(kwargs, dict) or set(kwargs) != set(EXTERNAL_KEYS):
        return [f"an external network's arch_kwargs are {list(EXTERNAL_KEYS)}"]
    problems = []
    if not isinstance(kwargs["factory"], str) or not FACTORY_PATTERN.match(kwargs["factory"]):
        problems.append(f"factory {kwargs['factory']!r} is not package.module:function")
    if not isinstance(kwargs["kwargs"], dict):
        problems.append("the factory's kwargs must be a JSON object")
    digest = kwargs["weights_sha256"]
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        problems.append("weights_sha256 must be 64 lowercase hex digits")
    if config.method_kwargs:
        problems.append("an external network has no method_kwargs")
    return problems
