"""A challenge room: the board (:mod:`.board`), the shipped models the challenges name, and the scoring
(:mod:`.scoring`) joined into what the dashboard and the command line call.

    room = ChallengeRoom(ModelStore())
    run = room.start(read_challenges()[0][0], by=lecturer)
    room.claim_nickname(owner, "ada")
    room.submit(run.id, owner, {"paint": canvas_rgba, "strength": 0.4})   # scored here, on the server
    room.board(run.id).ranks
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping

import torch

from ..lectures import shipped_weights
from .board import Board, ChallengeBoard, ChallengeError, Run, closed_message
from .reference import cached_reference, fool_reference, guess_reference
from .scoring import BadSubmission, canvas_direction, check_image, perturbed, read_payload, score_fool, score_split
from .spec import Challenge, budget_limit

KNN_TRAIN_IMAGES = 20_000  # the k-NN judge's training images: a query is one 20,000 x 784 product (~1 ms)


class ChallengeRoom:
    """Challenges on store ``store`` (a :class:`robust_core.store.ModelStore`): its folder holds the board's database,
    its shipped models are the challenges' models."""

    def __init__(self, store, *, data_dir=None, rate_limits: dict | None = None, models_dir=None):
        self.store = store
        self.board_db = ChallengeBoard(store.root, rate_limits=rate_limits)
        self.data_dir = data_dir
        self.models_dir = models_dir
        self._knn: dict[str, object] = {}
        self._lock = threading.Lock()

    # ---- what a challenge works on ---------------------------------------------------------------------------------
    def models(self, challenge: Challenge) -> dict[str, object]:
        """The challenge's models by file stem, loaded from the store (its in-memory cache: loaded once per server)."""
        ids = shipped_weights(self.models_dir)
        out = {}
        for name in challenge.models:
            if name not in ids:
                raise ChallengeError(f"the shipped model {name} is missing: reinstall the shipped models")
            try:
                out[name] = self.store.load(ids[name][0])
            except (KeyError, FileNotFoundError):
                raise ChallengeError(f"the shipped model {name} was removed from the store: restore it on the "
                                     "Models page (Install the shipped models)") from None
        return out

    def test_image(self, challenge: Challenge) -> tuple[torch.Tensor, int]:
        """A fool challenge's image, (1, C, H, W), and its label."""
        from ..data import load_dataset

        data = load_dataset(challenge.dataset, self.data_dir)
        return data.test_x[challenge.image : challenge.image + 1].clone(), int(data.test_y[challenge.image])

    def knn(self, dataset: str):
        """A 3-NN on raw pixels, fitted once per server on the first training images: the split challenge's judge
        of what a drawing looks like."""
        with self._lock:
            if dataset not in self._knn:
                from ..data import load_dataset
                from ..models.baselines import KNNBaseline

                data = load_dataset(dataset, self.data_dir)
                self._knn[dataset] = KNNBaseline(data.info.num_classes, k=3).fit(
                    data.train_x[:KNN_TRAIN_IMAGES], data.train_y[:KNN_TRAIN_IMAGES])
            return self._knn[dataset]

    def reference(self, challenge: Challenge) -> dict:
        """The lab's numbers for ``challenge`` (computed once per weights, across replicas)."""
        if challenge.kind == "fool":
            models = self.models(challenge)
            x, label = self.test_image(challenge)
            return cached_reference(self.store.root, challenge, lambda: fool_reference(challenge, models, x, label),
                                    models_dir=self.models_dir)
        if challenge.kind == "guess":
            try:
                return cached_reference(self.store.root, challenge, lambda: guess_reference(challenge),
                                        models_dir=self.models_dir)
            except ValueError as exc:
                raise ChallengeError(f"the measured answer is not available: {exc}") from None
        return {}

    # ---- the lecturer's actions ------------------------------------------------------------------------------------
    def start(self, challenge: Challenge, *, by: str = "", budget: float | None = None,
              reference: dict | None = None) -> Run:
        """A new run, with the lab's reference (:meth:`reference`, unless given) computed first: a run never shows a
        board without it."""
        settings = {}
        if challenge.kind == "fool":
            from ..data import dataset_info

            pixels = math.prod(dataset_info(challenge.dataset).shape)
            budget = challenge.budget if budget is None else float(budget)
            if not (0 < budget <= budget_limit(challenge.norm, pixels)):
                raise ChallengeError(f"the budget must lie in (0, {budget_limit(challenge.norm, pixels):g}] "
                                     f"({challenge.norm.upper()}), not {budget:g}")
            settings["budget"] = budget
        return self.board_db.start(challenge, by=by, settings=settings,
                                   reference=self.reference(challenge) if reference is None else reference)

    def set_state(self, run_id: int, state: str) -> Run:
        return self.board_db.set_state(run_id, state)

    def reset(self, run_id: int) -> None:
        self.board_db.reset(run_id)

    def hide(self, submission_id: int, hidden: bool = True) -> None:
        self.board_db.hide(submission_id, hidden)

    # ---- the students' ---------------------------------------------------------------------------------------------
    def claim_nickname(self, owner: str, nickname: str, *, address: str | None = None) -> str:
        return self.board_db.claim_nickname(owner, nickname, address=address)

    def nickname(self, owner: str) -> str | None:
        return self.board_db.nickname(owner)

    def preview(self, run: Run, payload: Mapping) -> tuple[torch.Tensor, dict]:
        """What a submission would score, without recording it: the image the server scores and its scores. The
        student's live reading is this, so what they see is what the board will get."""
        challenge = run.challenge
        fields = read_payload(challenge.kind, payload)
        if challenge.kind == "guess":
            answer = challenge.answer
            if not answer.low <= fields["answer"] <= answer.high:
                raise BadSubmission(f"the answer must lie in [{answer.low:g}, {answer.high:g}]")
            return None, {"answer": fields["answer"]}
        models = self.models(challenge)
        if challenge.kind == "fool":
            x, label = self.test_image(challenge)
            direction = canvas_direction(fields["paint"], tuple(x.shape[1:]))
            budget = float(run.settings["budget"])
            x_adv = perturbed(x, direction, norm=challenge.norm, budget=budget, strength=fields["strength"])
            return x_adv, score_fool(models, x=x, label=label, x_adv=x_adv, norm=challenge.norm, budget=budget)
        from ..data import dataset_info

        image = check_image(fields["image"], dataset_info(challenge.dataset).shape)
        return image, score_split(models, image=image, target=challenge.target, drawn=challenge.drawn,
                                  knn=self.knn(challenge.dataset))

    def submit(self, run_id: int, owner: str, payload: Mapping, *, now: float | None = None) -> int:
        """Score ``payload`` on the server (:meth:`preview`) and record it as ``owner``'s live entry. Raises
        ChallengeError (closed run, no nickname, rate limit) or BadSubmission (what cannot be scored)."""
        run = self.board_db.run(run_id)
        if run is None:
            raise ChallengeError("This challenge no longer exists.")
        if run.state != "open":  # said before any scoring work; the board checks it again as it records
            raise ChallengeError(closed_message(run.state))
        image, scores = self.preview(run, payload)
        return self.board_db.submit(run_id, owner, scores=scores, now=time.time() if now is None else now,
                                    image=None if image is None else image[0].numpy(),
                                    answer=scores.get("answer"))

    def board(self, run_id: int, *, include_hidden: bool = False) -> Board:
        return self.board_db.board(run_id, include_hidden=include_hidden)


__all__ = ["ChallengeRoom", "KNN_TRAIN_IMAGES"]
