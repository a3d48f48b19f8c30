"""What the Attack page's sections share (not a page): its settings and its gallery still to craft. Defined here, not in
the page script, which Streamlit runs again at every view: a dataclass is built anew each time it is defined."""
from __future__ import annotations

from dataclasses import dataclass

from robust_core.attacks import ATTACKS
from robust_core.evaluation import EvalKey


@dataclass
class AttackView:
    """What the page's settings chose, and what the sections share: the models, the attack, the images, the cache."""
    dataset: str
    store: object
    data: object
    networks: list
    names: dict
    cache: object
    model_ids: list
    attack: str
    params: dict
    n_images: int
    seed: int
    top: object  # where a lecture path's promised section draws: under the title (lab_pages._layout.focus_section)
    folded: list  # the sections' folded settings, side by side on a first screen

    @property
    def spec(self):
        return ATTACKS[self.attack]

    @property
    def params_key(self) -> tuple:
        return tuple(sorted(self.params.items()))

    def key(self, model_id: str) -> EvalKey:
        return EvalKey(model_id, self.attack, self.params_key, self.n_images, self.seed)


@dataclass
class PendingGallery:
    """Gallery digits still to craft once everything above is drawn, and where their progress shows."""
    todo: list  # (key, model id, the images' cached minimal eps or None)
    slot: object


__all__ = ["AttackView", "PendingGallery"]
