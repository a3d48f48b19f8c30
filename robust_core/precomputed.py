"""Evaluation results shipped beside the shipped models, so a lecture's first view needs no Compute click.

    python -m robust_core.precomputed build     # compute them (long: about an hour on 2 CPU cores; resumable)
    python -m robust_core.precomputed           # list them and install the valid ones into the store

Each result is one JSON file in ``assets/evaluations/`` holding a per-image minimal eps array exactly as
:class:`robust_core.evaluation.EvaluationCache` stores it (model id, attack, parameters, number of images,
seed, values), plus the SHA-256 of the model's weights and the command that made it. It is installed into
the store's cache only when the model in the store has those very weights and the key is the one the
current code would compute (``EvalKey.digest`` includes the search algorithm's version): a result whose model
or parameters changed is never reused, it is recomputed on demand like any other.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch

from .evaluation import CURVE_EPS_MAX, EvalKey, EvaluationCache, cached_minimal_eps, comparison_params
from .file_locks import atomic_write_text
from .store import InvalidCheckpointError

PRECOMPUTED_DIR = Path(__file__).resolve().parents[1] / "assets" / "evaluations"
COMMAND = "python -m robust_core.precomputed build"
N_IMAGES = 1000  # the first 1,000 test images: what the lecture paths open on
SEED = 0
EPS_MAX = CURVE_EPS_MAX["linf"]  # the curves' default largest L-inf eps
# The shipped results' parameters for each attack: the attack comparison's (with eps_max), which for PGD and FGSM are
# also the curves'. The keys must be the ones the Attack page computes, or it would not find the results.
SHIPPED_PARAMS = {a: comparison_params(a) for a in ("pgd", "fgsm", "apgd_ce", "square")}
# Every shipped MNIST network gets PGD-40 and FGSM; the single-step-trained one also gets the attack comparison
# that the gradient-masking lecture path shows (FGSM vs PGD, APGD-CE and Square).
PLAN = {"all": ("pgd", "fgsm"), "fgsm_at": ("apgd_ce", "square")}


def weights_digest(model) -> str:
    """SHA-256 of a network's parameters and buffers (names and bytes, in name order): the same weights, the same
    digest."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class Precomputed:
    path: Path
    payload: dict

    @property
    def key(self) -> EvalKey:
        p = self.payload
        return EvalKey(p["model_id"], p["attack"], tuple(sorted(p["params"].items())), int(p["n_examples"]),
                       int(p["seed"]))

    def values(self) -> torch.Tensor:
        return torch.tensor([float(v) for v in self.payload["min_eps"]], dtype=torch.float32)


def precomputed_results(directory: str | os.PathLike | None = None) -> tuple[list[Precomputed], list[str]]:
    """The shipped results, and one message per file that could not be read (never fatal)."""
    directory = Path(directory) if directory is not None else PRECOMPUTED_DIR
    found, errors = [], []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            payload = json.loads(path.read_text())
            item = Precomputed(path, payload)
            item.key.digest()
            if len(payload["min_eps"]) != payload["n_examples"] or not payload.get("weights_sha256"):
                raise ValueError("values and image count disagree, or no weights digest")
            item.values()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            errors.append(f"{path.name}: unreadable ({type(exc).__name__}: {exc})")
            continue
        found.append(item)
    return found, errors


def install_precomputed(store, cache: EvaluationCache | None = None, directory=None,
                        model_ids: Collection[str] | None = None) -> list[tuple[str, str]]:
    """Put every valid shipped result into the store's evaluation cache (only those of ``model_ids`` when given).
    Returns (file name, status) pairs: installed, present (already cached), skipped (model not in the store), stale
    (other weights, or a key the current code would not compute: recomputed on demand instead) or error."""
    cache = cache or EvaluationCache(store)
    items, errors = precomputed_results(directory)
    report = [(e.split(":", 1)[0], "error: " + e.split(": ", 1)[1]) for e in errors]
    digests: dict[str, str] = {}
    for item in items:
        key = item.key
        if model_ids is not None and key.model_id not in model_ids:
            continue
        if key.model_id not in store:
            report.append((item.path.name, "skipped: model not in the store"))
            continue
        if item.path.stem != key.digest():
            report.append((item.path.name, "stale: made for another version of the minimal-eps search"))
            continue
        if cache.get(key) is not None:  # installed by an earlier start (checked then) or computed here: valid
            report.append((item.path.name, "present"))
            continue
        if key.model_id not in digests:  # loading and hashing a model only when something may be installed
            try:
                digests[key.model_id] = weights_digest(store.load(key.model_id))
            except InvalidCheckpointError as exc:  # its weights do not load: the store sets it aside, the rest installs
                report.append((item.path.name, f"error: {exc}"))
                continue
        if digests[key.model_id] != item.payload["weights_sha256"]:
            report.append((item.path.name, "stale: the model's weights differ"))
            continue
        cache.put(key, item.values())
        report.append((item.path.name, "installed"))
    return report


def build(store, *, directory=None, n_images: int = N_IMAGES, models: list[str] | None = None, on_result=print) -> None:
    """Compute every planned result for the shipped MNIST networks in ``store`` and write it to ``directory``.

    Resumable: each result goes through the store's cache (an interrupted build keeps what it finished) and a
    file already written for the same key and weights is not computed again.
    """
    from .data import load_dataset

    directory = Path(directory) if directory is not None else PRECOMPUTED_DIR
    directory.mkdir(parents=True, exist_ok=True)
    from .shipped import shipped_models

    shipped = {s.model_id for s in shipped_models()}
    data = load_dataset("mnist")
    x, y = data.test_x[:n_images], data.test_y[:n_images]
    cache = EvaluationCache(store)
    networks = [e for e in store.list("mnist")
                if e.model_id in shipped and e.meta["config"]["arch"] not in ("knn", "logreg")
                and (models is None or e.model_id in models)]
    for entry in networks:
        digest = weights_digest(store.load(entry.model_id))
        attacks = PLAN["all"] + (PLAN["fgsm_at"] if entry.meta["config"]["method"] == "fgsm_at" else ())
        for attack in attacks:
            params = SHIPPED_PARAMS[attack]
            key = EvalKey(entry.model_id, attack, tuple(sorted(params.items())), n_images, SEED)
            path = directory / f"{key.digest()}.json"
            if path.is_file() and json.loads(path.read_text()).get("weights_sha256") == digest:
                on_result(f"present    {entry.name}: {attack}")
                continue
            values = cached_minimal_eps(store, cache, entry.model_id, x, y, attack=attack, seed=SEED, **params)
            payload = {"model_id": key.model_id, "model_name": entry.name, "attack": attack, "params": params,
                       "n_examples": n_images, "seed": SEED, "weights_sha256": digest, "command": COMMAND,
                       "min_eps": [v if math.isfinite(v) else "inf" for v in values.tolist()]}
            atomic_write_text(path, json.dumps(payload))
            on_result(f"written    {entry.name}: {attack} ({path.name})")


def main(argv: list[str] | None = None) -> int:
    from .shipped import install_shipped
    from .store import ModelStore

    parser = argparse.ArgumentParser(prog="python -m robust_core.precomputed", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", default="install", choices=["install", "build"])
    parser.add_argument("--store", default=None)
    parser.add_argument("--n", type=int, default=N_IMAGES, help="first n test images (build)")
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    install_shipped(store)
    if args.action == "build":
        build(store, n_images=args.n)
    for name, status in install_precomputed(store):
        print(f"{status:<10} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
