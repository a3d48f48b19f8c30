"""The store's training half: a configuration trained once per store (every process sharing the folder included), as
a call or as a job for :class:`robust_core.jobs.JobRunner` that several requesters may share."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..file_locks import compute_once
from ..training import ProgressEvent, TrainConfig, train_model
from .entries import StoredModel

TRAINING_REQUESTS = "requests"  # key of a training job's ``details``: requester -> (name, extra_meta)


def record_training_request(job, owner: str, *, name: str | None = None,
                            extra_meta: dict[str, Any] | None = None) -> None:
    """Record what ``owner``, a requester of the training ``job`` (made by :meth:`ModelStore.training_job`, or joined
    under its key), asked for: the model's ``name`` and ``extra_meta`` (its ``owner``...), used if ``owner`` is the
    first requester still waiting for the model when it is saved."""
    job.details.setdefault(TRAINING_REQUESTS, {})[owner] = (name, dict(extra_meta or {}))


def _remaining_request(job, name: str | None,
                       extra_meta: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """The (name, extra_meta) to save a shared training with: the first remaining requester's recorded request; when
    requests were recorded but none by a remaining requester, the default name and no owner (nothing of those who
    withdrew); without recorded requests, the job's own ``name`` and ``extra_meta``."""
    requests = job.details.get(TRAINING_REQUESTS)
    if not requests:
        return name, extra_meta
    remaining = next((requests[o] for o in list(job.owners) if o in requests), None)
    return remaining if remaining is not None else (None, None)


class StoreTraining:
    """Training for :class:`robust_core.store.ModelStore` (which this is a part of): its ``root``, ``get``, ``load``,
    ``save`` and ``refuse_damaged`` are the store's."""

    def train_or_load(
        self,
        config: TrainConfig,
        *,
        name: str | None = None,
        device: torch.device | str | None = None,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        data=None,
        extra_meta: dict[str, Any] | None = None,
    ) -> tuple[Any, StoredModel, bool]:
        """(model, entry, was_cached): the stored model for ``config``, training it only if absent."""
        model_id = config.config_hash()
        trained = []

        def train() -> StoredModel:
            self.refuse_damaged(model_id)
            result = train_model(config, data=data, device=device, on_progress=on_progress, should_stop=should_stop)
            trained.append(result.model)
            return self.save(result, name=name, extra_meta=extra_meta)

        # Under the training's lock: a process asking for the same configuration meanwhile waits, then loads it.
        entry = compute_once(self.root, f"train-{model_id}", read=lambda: self._usable(model_id), compute=train)
        if trained:
            return trained[0], entry, False
        return self.load(model_id, device=device), entry, True

    def _usable(self, model_id: str) -> StoredModel | None:
        return self.get(model_id) if model_id in self else None

    def training_job(self, config: TrainConfig, *, name: str | None = None, data=None,
                     extra_meta: dict[str, Any] | None = None) -> Callable[[Any], StoredModel]:
        """``train_or_load`` as a job for :class:`robust_core.jobs.JobRunner`: ``fn(ctx) -> StoredModel``.

        While it trains, ``ctx.job.details`` holds ``live`` (the curves so far: per-batch (epoch position, loss,
        accuracy) and per-epoch validation loss/accuracy, for a live chart) and ``last`` (the last progress event's
        numbers). ``ctx.progress`` raises ``JobCancelled`` once nobody wants the model: training stops between two
        batches and nothing is saved.

        Several requesters may share the job (the runner runs one training per key): each one's name and metadata,
        recorded with :func:`record_training_request`, are theirs; the model is saved with those of the first
        requester still waiting for it, so one who cancelled leaves neither their name nor their ownership on it.
        Without recorded requests, ``name`` and ``extra_meta`` are used.
        """
        def run(ctx) -> StoredModel:
            live = ctx.job.details.setdefault("live", {"batches": [], "epoch": [], "val_loss": [], "val_acc": []})

            def on_progress(event: ProgressEvent) -> None:
                last = {"epoch": event.epoch, "epochs": event.epochs, "batch": event.batch,
                        "batches": event.batches_per_epoch, "loss": event.train_loss, "acc": event.train_acc,
                        "elapsed_s": event.elapsed_s, "eta_s": event.eta_s}
                if event.kind == "batch":
                    live["batches"].append(((event.epoch - 1) + event.batch / event.batches_per_epoch, event.train_loss,
                                            event.train_acc))
                else:  # "epoch": the validation numbers
                    live["epoch"].append(event.epoch)
                    live["val_loss"].append(event.val_loss)
                    live["val_acc"].append(event.val_acc)
                ctx.job.details["last"] = last
                ctx.progress(min(event.fraction, 1.0))

            def train() -> StoredModel:
                self.refuse_damaged(config.config_hash())
                result = train_model(config, data=data, on_progress=on_progress)
                ctx.check()  # withdrawn by everyone during the last batch: nothing is saved
                chosen_name, chosen_meta = _remaining_request(ctx.job, name, extra_meta)
                return self.save(result, name=chosen_name, extra_meta=chosen_meta)

            # Another replica training the same configuration: wait for its model (cancellable), do not train twice.
            model_id = config.config_hash()
            return compute_once(self.root, f"train-{model_id}", read=lambda: self._usable(model_id), compute=train,
                                while_waiting=ctx.check)

        return run
