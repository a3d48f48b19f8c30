"""scikit-learn baselines behind the same ``predict_proba`` as the networks.

Their state is saved as plain tensors (safetensors), never pickled: the logistic regression
keeps its coefficients; the k-NN keeps nothing but the name of the training split it
memorises, and refits from the dataset on load (a brute-force k-NN's fit is a copy).
"""
from __future__ import annotations

import numpy as np
import torch


def _flatten(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(len(x), -1).cpu().numpy().astype(np.float32, copy=False)


class SklearnBaseline:
    """Common surface: fit(x, y), predict_proba(x) -> tensor on x's device, state_dict/load_state_dict."""

    kind = "sklearn"
    estimator = None
    training = False  # so code that saves and restores ``model.training`` works on baselines too

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "SklearnBaseline":
        self.estimator.fit(_flatten(x), y.cpu().numpy())
        return self

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        proba = self.estimator.predict_proba(_flatten(x))
        full = np.zeros((len(proba), self.num_classes), dtype=np.float32)
        full[:, self.estimator.classes_] = proba  # a class absent from a small training subset gets 0
        return torch.from_numpy(full).to(x.device)

    def parameter_count(self) -> int | None:
        """Fitted parameters; None for a non-parametric model such as k-NN."""
        return None


class LogisticRegressionBaseline(SklearnBaseline):
    """Multinomial logistic regression on raw pixels (seed 002, §1.3: about 92.6% on MNIST)."""

    def __init__(self, num_classes: int, *, C: float = 1.0, max_iter: int = 100, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        self.num_classes = num_classes
        self.estimator = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)

    def state_dict(self) -> dict[str, torch.Tensor]:
        e = self.estimator
        return {
            "coef": torch.from_numpy(e.coef_.astype(np.float32)),
            "intercept": torch.from_numpy(e.intercept_.astype(np.float32)),
            "classes": torch.from_numpy(e.classes_.astype(np.int64)),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        e = self.estimator
        e.coef_ = state["coef"].numpy().astype(np.float64)
        e.intercept_ = state["intercept"].numpy().astype(np.float64)
        e.classes_ = state["classes"].numpy()
        e.n_features_in_ = e.coef_.shape[1]

    def parameter_count(self) -> int:
        e = self.estimator
        return int(e.coef_.size + e.intercept_.size)


class KNNBaseline(SklearnBaseline):
    """k-nearest neighbours on raw pixels, Euclidean distance (seed 002, §1.3: k=3, about 96.9%)."""

    def __init__(self, num_classes: int, *, k: int = 3, seed: int = 0):
        from sklearn.neighbors import KNeighborsClassifier

        self.num_classes = num_classes
        self.k = k
        self.estimator = KNeighborsClassifier(n_neighbors=k, algorithm="brute", n_jobs=-1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"k": torch.tensor([self.k])}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if int(state["k"][0]) != self.k:
            raise ValueError(f"checkpoint has k={int(state['k'][0])}, model was built with k={self.k}")
