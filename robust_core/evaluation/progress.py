"""Progress of long evaluations for a progress bar and its time estimate: a minimal-eps search's work counted as it
happens against the worst case of what is left, and an AutoAttack chain's share done after each stage.

Both weigh attack calls by :meth:`robust_core.attacks.AttackSpec.cost`, the attacks' one cost model."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..attacks import AttackSpec, stage_cost


class WorkMeter:
    """Progress of a minimal-eps search in units of work: done / (done + worst case of what is left).

    The work is counted as it happens, not assumed: every forward pass the attacks make adds its
    images (plus a per-pass overhead), so attack calls that stop early because every image broke and
    calls whose survivors need every step advance the bar by what they really cost. What is left is
    bounded from above (every image runs every step, every bisection bracket splits in two), so the
    fraction never runs ahead of the work: an ETA from it errs long, then shortens. Counting bisection
    rounds instead said 7/8 done on a robust model before its slowest rounds (survivors run every
    step, late rounds split into many small groups) had begun.
    """

    def __init__(self, on_progress: Callable[[float], None], overhead: float):
        self.on_progress, self.overhead = on_progress, overhead
        self.done = 0.0  # work counted so far
        self.call_left = 0.0  # worst case left of the attack call under way
        self.after = 0.0  # worst case of everything after that call
        self.reported = 0.0

    def plan(self, call: float, after: float) -> None:
        """A new attack call starts: its worst-case work and the worst case of all that follows it."""
        self.call_left, self.after = call, after
        self.report()

    def plan_with_later(self, later: float, call: float, after: float) -> None:
        """:meth:`plan`, with ``later`` (the worst case of the batches not started yet) added to what follows."""
        self.plan(call, after + later)

    def count(self, images: int) -> None:
        work = images + self.overhead
        self.done += work
        self.call_left = max(self.call_left - work, 0.0)
        self.report(step=0.002)  # a report per forward pass would flood a progress bar with messages

    def report(self, step: float = 0.0, final: bool = False) -> None:
        total = self.done + self.call_left + self.after
        fraction = 1.0 if final or total <= 0 else min(self.done / total, 1.0)
        # Monotone even where a call did more passes than its plan (APGD's extra gradient at a restart).
        if final or fraction > self.reported + step:
            self.reported = max(fraction, self.reported)
            self.on_progress(self.reported)


class CountedModel(torch.nn.Module):
    """The model, counting into a :class:`WorkMeter` the images of every forward pass the attacks make."""

    def __init__(self, model, meter: WorkMeter):
        super().__init__()
        self.model, self.meter = model, meter
        self.train(model.training)  # eval_mode() on this wrapper then restores the model's own mode

    def forward(self, x):
        self.meter.count(len(x))
        return self.model(x)


def pass_overhead(device: torch.device) -> float:
    """Fixed cost of one forward pass in images: on a CPU a pass costs about its batch size; on a GPU a
    small batch costs nearly as much as a full one, so the many small groups of late bisection rounds count."""
    return 1.0 if device.type == "cpu" else 256.0


def worst_search(spec: AttackSpec, n: int, found: int, groups: int, rounds: int, per_call: int, overhead: float,
                 with_first_call: bool) -> float:
    """Worst-case work of a search's remaining attack calls: (with_first_call) one call on the ``n`` images
    at eps_max, then ``rounds`` bisection rounds over ``found`` images whose ``groups`` brackets can each
    split in two per round (one attack call per bracket). ``per_call``: the forward passes one image costs in one
    call (``spec.cost(...).forwards``)."""
    work = per_call * (n + overhead) if with_first_call else 0.0
    if spec.kind == "minimal" or spec.single_step:  # one call, or one gradient and a grid: no bisection
        return work
    for r in range(rounds):
        work += per_call * (found + overhead * min(found, groups * 2**r))
    return work


def stage_fractions(chain: Sequence[tuple[str, dict]]) -> list[float]:
    """The share of an AutoAttack chain's work done after each stage, for a progress bar and its time estimate.

    Each stage weighs what one image it attacks costs (:func:`robust_core.attacks.stage_cost`: its steps, targets,
    restarts or queries, a gradient about three forward passes). Counting stages instead said "25%, about 20 s left"
    after APGD-CE of the standard chain, which has then done about 3% of its work. Worst case (a robust model: every
    stage runs on nearly every image); on a weak one the later stages have little left to attack and the job ends
    early.
    """
    costs = [stage_cost(name, params).work for name, params in chain]
    total = sum(costs)
    done, fractions = 0.0, []
    for cost in costs:
        done += cost
        fractions.append(done / total)
    fractions[-1] = 1.0
    return fractions
