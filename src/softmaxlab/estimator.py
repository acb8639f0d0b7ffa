"""``SoftmaxRegression``: a scikit-learn estimator for multinomial logistic (softmax) regression.

The model and objective
-----------------------
For ``X`` of shape (n, d) the scores are ``Z = X @ W + b``. With K >= 3 classes ``W`` is (d, K),
``b`` is (K,) and the logits are ``Z``. With K = 2 classes ``W`` is (d, 1) and the logits are
``[0, Z]``: the first class's score is pinned at zero, which removes the redundant parameter of a
two-class softmax and makes the model exactly scikit-learn's binary ``LogisticRegression``
(``decision_function`` is ``Z``, shape (n,), and ``coef_`` is (1, d)).

Both ``fit`` and ``partial_fit`` minimise the same objective::

    mean_i cross_entropy(logits_i, y_i) + alpha / 2 * ||W||_F^2

The intercept ``b`` is not penalised. scikit-learn's ``LogisticRegression`` minimises
``1/2 ||W||^2 + C * sum_i loss_i``; dividing by ``C * n`` shows that ``alpha = 1 / (C * n)``
gives the same minimiser.

The objective and its gradient are :func:`softmaxlab.models.objective`, the one L-BFGS also
minimises in ``softmaxlab train``, and predictions come from :class:`softmaxlab.models.SoftmaxModel`,
the model every trained run becomes; everything is computed in float64 torch.

scikit-learn is an optional extra (``pip install 'softmaxlab[sklearn]'``). Without it this module
still imports, but creating a ``SoftmaxRegression`` raises ``ImportError`` saying how to install it.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from .models import SoftmaxModel, objective

_INSTALL_HINT = (
    "SoftmaxRegression needs scikit-learn, an optional dependency of softmaxlab; "
    "install it with: pip install 'softmaxlab[sklearn]'"
)

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import Interval
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn is an optional extra
    _SKLEARN_IMPORT_ERROR: ImportError | None = exc

    class BaseEstimator:  # type: ignore[no-redef]
        """Stand-in base used when scikit-learn is missing: instantiating raises ImportError."""

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            raise ImportError(_INSTALL_HINT) from _SKLEARN_IMPORT_ERROR

    class ClassifierMixin:  # type: ignore[no-redef]
        """Stand-in for scikit-learn's ClassifierMixin (never instantiated)."""

else:
    _SKLEARN_IMPORT_ERROR = None

__all__ = ["SoftmaxRegression"]

# L-BFGS stops when the loss changes by less than this between iterations; the same value as
# scikit-learn's lbfgs solver uses for scipy's ``ftol`` (our loss is a mean, so it is O(1)).
_FTOL = 64 * np.finfo(np.float64).eps
# Memory of L-BFGS (pairs of past steps kept); scipy's and hence scikit-learn's default.
_LBFGS_HISTORY = 10
# torch's strong-Wolfe line search takes at most 25 evaluations per iteration; give L-BFGS that
# budget so that only ``max_iter`` limits the number of iterations.
_EVALS_PER_ITER = 25


def _constraints() -> dict[str, list[Any]]:
    if _SKLEARN_IMPORT_ERROR is not None:
        return {}
    return {
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }


def _as_tensor(X: np.ndarray) -> torch.Tensor:
    """Validated (n, d) array -> float64 torch tensor, without sharing read-only memory."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not X.flags.writeable:  # e.g. a read-only memmap; torch warns on non-writable arrays
        X = X.copy()
    return torch.from_numpy(X)


def _full(W: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W (d, K'), b (K',) -> the softmax model's W (d, K), b (K): for binary models (K' = 1) the
    first class's column of zeros in front, so that its logits are [0, z]."""
    if W.shape[1] == 1:
        return torch.cat([torch.zeros_like(W), W], dim=1), torch.cat([torch.zeros_like(b), b])
    return W, b


def _loss_and_grad(
    W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Objective mean CE + alpha/2 ||W||² and its gradients (``models.objective``).

    W (d, K'), b (K',), X (n, d), y (n,) class indices -> (loss (), dW (d, K'), db (K',)).
    """
    loss, dW, db = objective(*_full(W, b), X, y, weight_decay=alpha)
    if W.shape[1] == 1:  # binary: the first column is the constant zero
        return loss, dW[:, 1:], db[1:]
    return loss, dW, db


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Multinomial logistic (softmax) regression with an L2 penalty, fitted with torch.

    Minimises ``mean cross-entropy + alpha / 2 * ||coef_||²`` (the intercept is not penalised);
    ``alpha = 1 / (C * n_samples)`` matches scikit-learn's ``LogisticRegression(C=C)``. Two-class
    problems use one weight vector (logits ``[0, z]``), exactly like binary ``LogisticRegression``.

    Parameters
    ----------
    alpha : float, default=1e-4
        L2 penalty strength, >= 0: the objective adds ``alpha / 2 * ||W||²`` to the mean loss.
    max_iter : int, default=100
        Maximum number of L-BFGS iterations in ``fit``, >= 1.
    tol : float, default=1e-6
        ``fit`` has converged when the largest absolute entry of the objective's gradient
        (weights and intercept) is <= ``tol``.
    lr : float, default=0.1
        Step size of the minibatch SGD in ``partial_fit``, > 0 (``fit`` does not use it).
    batch_size : int, default=256
        Minibatch size of ``partial_fit``, >= 1 (``fit`` is full-batch).
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling of ``partial_fit`` (combined with the epoch number, so every call
        shuffles differently but reproducibly). ``fit`` starts from zero and is deterministic.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted class labels.
    coef_ : ndarray of shape (n_classes, n_features), or (1, n_features) for two classes
        The weights.
    intercept_ : ndarray of shape (n_classes,), or (1,) for two classes
        The intercepts; for K >= 3 classes they are centred to sum to zero (softmax is unchanged
        by a common shift and the intercept is not penalised, so only differences matter).
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` had string column names (e.g. a DataFrame).
    n_iter_ : int
        L-BFGS iterations run by the last ``fit``, or the number of ``partial_fit`` epochs run
        since the last ``fit`` (or since the first ``partial_fit``).
    """

    _parameter_constraints: dict = _constraints()

    def __init__(
        self,
        alpha: float = 1e-4,
        max_iter: int = 100,
        tol: float = 1e-6,
        lr: float = 0.1,
        batch_size: int = 256,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.lr = lr
        self.batch_size = batch_size
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def fit(self, X: ArrayLike, y: ArrayLike) -> SoftmaxRegression:
        """Fit by full-batch L-BFGS (strong-Wolfe line search) from W = 0, b = 0.

        X (n_samples, n_features), y (n_samples,) labels of any kind. Warns with
        ``ConvergenceWarning`` if ``max_iter`` iterations did not reach ``tol``. Returns self.
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        self._check_n_classes(classes)
        Xt, yt = _as_tensor(X), torch.from_numpy(y_idx.astype(np.int64).ravel())

        k = 1 if len(classes) == 2 else len(classes)
        W = torch.zeros(X.shape[1], k, dtype=torch.float64)
        b = torch.zeros(k, dtype=torch.float64)
        alpha = float(self.alpha)
        optimizer = torch.optim.LBFGS(
            [W, b],
            lr=1.0,
            max_iter=self.max_iter,
            max_eval=self.max_iter * _EVALS_PER_ITER,
            tolerance_grad=self.tol,
            tolerance_change=_FTOL,
            history_size=_LBFGS_HISTORY,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            loss, W.grad, b.grad = _loss_and_grad(W, b, Xt, yt, alpha)
            return loss

        optimizer.step(closure)
        n_iter = int(optimizer.state[W].get("n_iter", 0))
        _, dW, db = _loss_and_grad(W, b, Xt, yt, alpha)
        grad_max = max(float(dW.abs().max()), float(db.abs().max()))
        # Like scikit-learn, warn when the iteration budget ran out. Stopping earlier without
        # reaching tol means no progress was possible (the loss or step stalled at rounding level).
        if n_iter >= self.max_iter and grad_max > self.tol:
            warnings.warn(
                f"L-BFGS did not converge in max_iter={self.max_iter} iterations: the largest "
                f"gradient entry is {grad_max:.3g} > tol={self.tol}. Increase max_iter, scale the "
                "data (e.g. StandardScaler) or increase alpha.",
                ConvergenceWarning,
                stacklevel=2,
            )

        self.classes_ = classes
        self._store(W, b)
        self.n_iter_ = n_iter
        self._n_epochs = 0
        return self

    def partial_fit(
        self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None
    ) -> SoftmaxRegression:
        """Run one epoch of shuffled minibatch SGD on (X, y); starts from W = 0 on the first call.

        X (n_samples, n_features), y (n_samples,). ``classes`` (all labels that will ever be
        seen) is required on the first call; later calls may omit it, must pass the same set if
        they give it, and their labels must be in ``classes_``. Returns self.
        """
        self._validate_params()
        first_call = not hasattr(self, "classes_")
        if first_call and classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit: give every label "
                "that can occur, e.g. classes=np.unique(y_all)."
            )
        X, y = validate_data(self, X, y, dtype=np.float64, reset=first_call)
        check_classification_targets(y)
        if classes is not None:
            classes = np.unique(np.asarray(classes))
            if first_call:
                self._check_n_classes(classes)
            elif not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"classes={classes.tolist()} is not the same as on the first call to "
                    f"partial_fit (or in fit), classes_={self.classes_.tolist()}"
                )
        known = classes if first_call else self.classes_
        unknown = np.setdiff1d(np.unique(y), known)
        if unknown.size:
            raise ValueError(
                f"y contains labels {unknown.tolist()} that are not in classes "
                f"{known.tolist()}; pass every possible label in `classes` on the first call "
                "to partial_fit."
            )

        if first_call:
            k = 1 if len(known) == 2 else len(known)
            W = torch.zeros(X.shape[1], k, dtype=torch.float64)
            b = torch.zeros(k, dtype=torch.float64)
            epoch = 0
        else:
            W = torch.from_numpy(self.coef_.T.copy())
            b = torch.from_numpy(self.intercept_.copy())
            epoch = getattr(self, "_n_epochs", 0)

        Xt = _as_tensor(X)
        yt = torch.from_numpy(np.searchsorted(known, y).astype(np.int64))
        order = torch.from_numpy(self._epoch_rng(epoch).permutation(X.shape[0]))
        alpha, lr = float(self.alpha), float(self.lr)
        for start in range(0, X.shape[0], self.batch_size):
            idx = order[start : start + self.batch_size]
            _, dW, db = _loss_and_grad(W, b, Xt[idx], yt[idx], alpha)
            W.sub_(lr * dW)
            b.sub_(lr * db)

        self.classes_ = known
        self._store(W, b)
        self._n_epochs = epoch + 1
        self.n_iter_ = self._n_epochs
        return self

    # ------------------------------------------------------------------ prediction

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Scores ``X @ coef_.T + intercept_``: (n_samples, n_classes), or (n_samples,) for two
        classes (the log-odds of ``classes_[1]``)."""
        model = self._model()  # (first: the not-fitted check)
        Z = model.logits(self._validated(X))
        return Z[:, 1].numpy() if self.coef_.shape[0] == 1 else Z.numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Most probable class label for each row. X (n_samples, n_features) -> (n_samples,)."""
        model = self._model()
        return self.classes_[model.predict(self._validated(X)).numpy()]

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (softmax of the logits), columns in ``classes_`` order.

        X (n_samples, n_features) -> (n_samples, n_classes); rows sum to 1.
        """
        model = self._model()
        return model.predict_proba(self._validated(X)).numpy()

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Log class probabilities by a stable log-softmax (finite even where proba underflows).

        X (n_samples, n_features) -> (n_samples, n_classes).
        """
        model = self._model()
        return model.predict_log_proba(self._validated(X)).numpy()

    # ------------------------------------------------------------------ helpers

    def _model(self) -> SoftmaxModel:
        """The fitted model as a ``SoftmaxModel`` (binary: logits [0, z])."""
        check_is_fitted(self)
        W = torch.from_numpy(np.ascontiguousarray(self.coef_.T))
        return SoftmaxModel(*_full(W, torch.from_numpy(self.intercept_)))

    def _validated(self, X: ArrayLike) -> torch.Tensor:
        """X (n, d) validated against the fit, as a float64 tensor."""
        return _as_tensor(validate_data(self, X, dtype=np.float64, reset=False))

    def _store(self, W: torch.Tensor, b: torch.Tensor) -> None:
        """Save trained tensors W (d, K'), b (K',) as numpy ``coef_`` (K', d), ``intercept_``."""
        b = b.detach().clone()
        if b.shape[0] > 1:
            b -= b.mean()  # a common shift of all logits changes nothing; centre for uniqueness
        self.coef_ = W.detach().T.contiguous().numpy().copy()
        self.intercept_ = b.numpy()

    def _check_n_classes(self, classes: np.ndarray) -> None:
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes, but the data "
                f"contains only one class: {classes.tolist()}"
            )

    def _epoch_rng(self, epoch: int) -> np.random.Generator:
        """RNG for the shuffle of epoch ``epoch``, from ``random_state`` and the epoch number."""
        if isinstance(self.random_state, numbers.Integral):
            base = int(self.random_state)
        else:  # None (global numpy RNG) or a RandomState, which this draw advances
            base = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        return np.random.default_rng([base, epoch])
