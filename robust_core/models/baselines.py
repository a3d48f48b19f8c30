"""The non-network baselines (logistic regression, k-NN) behind the same ``predict_proba`` as the networks.

Both are fitted in closed form or by a deterministic solver, not trained by gradient descent, and
both are computed with PyTorch: scikit-learn's float64 L-BFGS took over a minute on MNIST's
55,000 x 784 training split where a float32 one takes seconds, and a brute-force k-NN is one
matrix product per batch of queries.

Their state is saved as plain tensors (safetensors), never pickled: the logistic regression
keeps its coefficients; the k-NN keeps nothing but k, and refits from the dataset on load
(a brute-force k-NN's fit is a copy).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(len(x), -1).float().cpu()


class FittedBaseline:
    """Common surface of the fitted baselines: fit(x, y), predict_proba(x) -> tensor on x's device,
    state_dict/load_state_dict."""

    kind = "fitted"
    training = False  # so code that saves and restores ``model.training`` works on baselines too
    num_classes: int

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "FittedBaseline":
        raise NotImplementedError

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def differentiable(self) -> nn.Module | None:
        """A torch module returning the same logits, for white-box attacks; None without a gradient (k-NN)."""
        return None

    def parameter_count(self) -> int | None:
        """Fitted parameters; None for a non-parametric model such as k-NN."""
        return None


class _Linear(nn.Module):
    """Logits of a linear model on raw pixels: flatten, then x W^T + b."""

    def __init__(self, coef: torch.Tensor, intercept: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(coef.shape[1], coef.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(coef)
            self.linear.bias.copy_(intercept)
        self.linear.requires_grad_(False)  # attacks need input gradients only
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class LogisticRegressionBaseline(FittedBaseline):
    """Multinomial logistic regression on raw pixels (about 92.6% on MNIST).

    Minimises scikit-learn's objective, mean cross-entropy + ||W||^2 / (2 C n) (intercept not
    penalised), from zero with full-batch L-BFGS for at most ``max_iter`` iterations (scikit-learn's
    lbfgs solver and defaults, in float32).
    """

    def __init__(self, num_classes: int, *, C: float = 1.0, max_iter: int = 100, seed: int = 0):
        if not C > 0:
            raise ValueError(f"C must be positive, got {C}")
        self.num_classes = num_classes
        self.C, self.max_iter = float(C), int(max_iter)
        self.seed = seed  # unused: the fit starts from zero and is deterministic; kept for the common contract
        self.coef: torch.Tensor | None = None  # (num_classes, features)
        self.intercept: torch.Tensor | None = None  # (num_classes,)

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "LogisticRegressionBaseline":
        features, labels = _flatten(x), y.detach().long().cpu()
        n = len(features)
        weight = torch.zeros(self.num_classes, features.shape[1], requires_grad=True)
        bias = torch.zeros(self.num_classes, requires_grad=True)
        # tolerance_grad = scikit-learn's default tol (max |gradient| of the mean loss).
        optimiser = torch.optim.LBFGS([weight, bias], lr=1, max_iter=self.max_iter, history_size=10,
                                      tolerance_grad=1e-4, tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure():
            optimiser.zero_grad()
            loss = (F.cross_entropy(torch.addmm(bias, features, weight.T), labels)
                    + weight.pow(2).sum() / (2 * self.C * n))
            loss.backward()
            return loss

        with torch.enable_grad():
            optimiser.step(closure)
        self.coef, self.intercept = weight.detach().clone(), bias.detach().clone()
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.coef is None:
            raise RuntimeError("the logistic regression is not fitted")
        return torch.addmm(self.intercept, _flatten(x), self.coef.T).to(x.device)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(1)

    def differentiable(self) -> nn.Module:
        if self.coef is None:
            raise RuntimeError("the logistic regression is not fitted")
        return _Linear(self.coef, self.intercept)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"coef": self.coef.clone(), "intercept": self.intercept.clone(),
                "classes": torch.arange(self.num_classes, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        coef, intercept = state["coef"].float(), state["intercept"].float()
        classes = state.get("classes", torch.arange(len(coef))).long()
        if coef.ndim != 2 or intercept.shape != (len(coef),) or classes.shape != (len(coef),):
            raise ValueError(f"inconsistent logistic-regression checkpoint: coef {tuple(coef.shape)}, "
                             f"intercept {tuple(intercept.shape)}, classes {tuple(classes.shape)}")
        if len(classes) and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise ValueError(f"checkpoint classes {classes.tolist()} do not fit {self.num_classes} classes")
        if not (torch.isfinite(coef).all() and torch.isfinite(intercept).all()):
            raise ValueError("the logistic-regression checkpoint holds NaN or infinite values")
        # Checkpoints written by scikit-learn hold only the classes seen in training; an absent
        # class gets a logit so low that its probability is 0, as scikit-learn gave it.
        self.coef = torch.zeros(self.num_classes, coef.shape[1])
        self.intercept = torch.full((self.num_classes,), -1e4)
        self.coef[classes], self.intercept[classes] = coef, intercept

    def parameter_count(self) -> int:
        return int(self.coef.numel() + self.intercept.numel())


class KNNBaseline(FittedBaseline):
    """k-nearest neighbours on raw pixels, Euclidean distance, brute force (k=3: about 96.9% on MNIST).

    ``predict_proba`` is the share of the k votes per class, so m(x) only takes the values j/k.
    """

    def __init__(self, num_classes: int, *, k: int = 3, seed: int = 0, batch_size: int = 500):
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.num_classes = num_classes
        self.k = int(k)
        self.batch_size = batch_size  # queries per distance matrix (batch x training images floats)
        self._x: torch.Tensor | None = None
        self._sq: torch.Tensor | None = None
        self._y: torch.Tensor | None = None

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "KNNBaseline":
        if len(x) < self.k:
            raise ValueError(f"a {self.k}-NN needs at least {self.k} training images, got {len(x)}")
        self._x, self._y = _flatten(x).contiguous(), y.detach().long().cpu()
        self._sq = self._x.pow(2).sum(1)
        return self

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        if self._x is None:
            raise RuntimeError("the k-NN is not fitted")
        queries, out = _flatten(x), []
        for i in range(0, len(queries), self.batch_size):
            # ||q - t||^2 = ||t||^2 - 2 q.t + ||q||^2; the last term is the same for every t, so it is left out.
            distances = torch.addmm(self._sq[None, :], queries[i : i + self.batch_size], self._x.T, alpha=-2)
            nearest = distances.topk(self.k, dim=1, largest=False).indices
            out.append(F.one_hot(self._y[nearest], self.num_classes).sum(1).float() / self.k)
        if not out:
            return torch.zeros(0, self.num_classes, device=x.device)
        return torch.cat(out).to(x.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"k": torch.tensor([self.k])}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if int(state["k"][0]) != self.k:
            raise ValueError(f"checkpoint has k={int(state['k'][0])}, model was built with k={self.k}")
