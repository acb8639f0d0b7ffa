"""``SoftmaxRegression``: a scikit-learn estimator for multinomial logistic (softmax) regression.

The model and objective
-----------------------
For ``X`` of shape (n, d) the scores are ``Z = X @ W + b``. With K >= 3 classes ``W`` is (d, K),
``b`` is (K,) and the logits are ``Z``. With K = 2 classes ``W`` is (d, 1) and the logits are
``[0, Z]``: the first class's score is pinned at zero, which removes the redundant parameter of a
two-class softmax and makes the model exactly scikit-learn's binary ``LogisticRegression``
(``decision_function`` is ``Z``, shape (n,), and ``coef_`` is (1, d)).

``fit`` minimises the weighted mean of the cross-entropies plus an L2 penalty::

    sum_i s_i cross_entropy(logits_i, y_i) / sum_i s_i + alpha / 2 * ||W||_F^2

where ``s_i`` is ``sample_weight[i]`` times the ``class_weight`` of ``y_i`` (all 1 without them).
So integer sample weights are the same as repeating examples, and a class weight is the same as
that sample weight on the class's examples. The intercept ``b`` is not penalised.
scikit-learn's ``LogisticRegression`` minimises ``1/2 ||W||^2 + C * sum_i s_i loss_i``; dividing
by ``C * sum_i s_i`` shows that ``alpha = 1 / (C * sum_i s_i)`` gives the same minimiser.

The solvers
-----------
- ``"lbfgs"``: the exact minimiser: full-batch L-BFGS (scipy's L-BFGS-B with scikit-learn's
  options, as ``LogisticRegression`` runs it, but a history of 20 steps instead of 10) on the
  core's full-batch objective and gradient, :func:`softmaxlab.models.objective` (for more than
  two classes in the flat form of :func:`softmaxlab.models.flat_objective`). It stops when the largest absolute entry of the gradient is
  <= ``tol``, or when the objective changes by less than 64 float64 epsilons (scikit-learn's
  tests; in float32: when it no longer changes).
- ``"sgd"``: ``softmaxlab train --recipe fast`` on the data given: minibatch SGD with momentum
  0.9 on a cosine learning-rate schedule from 0.08, on standardised features, run by
  :class:`softmaxlab.fast.FastSGD` (the tuned epoch). The recipe's 5 epochs of batch 1024 were
  tuned on Fashion-MNIST's 60,000 examples; on smaller data the batch shrinks in proportion (to
  no less than 16) and the epochs grow so that training takes at least the recipe's number of
  steps. The features are standardised inside (mean 0, std 1 per feature over ``X``; constant
  features are only centred), which makes one learning rate fit every scale of data; the
  weights are mapped back, so ``coef_`` and ``intercept_`` always apply to ``X`` as given. The
  penalty ``alpha`` applies to the weights of the standardised features: on standardised data
  (``StandardScaler`` first) both solvers minimise the same objective.
- ``"auto"`` (the default): ``"sgd"`` when ``X`` has at least 10,000 rows or ``early_stopping``
  is on, else ``"lbfgs"``. On large data the 5-epoch recipe reaches L-BFGS's accuracy in a small
  fraction of its time; on small data L-BFGS is exact and takes milliseconds.

``partial_fit`` runs one epoch of plain minibatch SGD (no momentum, constant ``lr``, the
features as given; uint8 images as x / 255) on ``FastSGD``, from the current weights.

Small problems (fewer than 2**23 multiply-adds in one product ``X @ W``) are fitted and predicted
on one torch thread, as scikit-learn does them: splitting such small kernels across threads
costs more than it saves (``_threads_for``).

Precision: ``lbfgs`` and ``partial_fit`` compute in float64 when ``X`` is float64 and in float32
otherwise; ``sgd`` computes in float32 (its minibatch noise is far above float32's rounding, and
it is about twice as fast). ``dtype="float32"`` or ``"float64"`` sets it for every solver.
``coef_`` has that dtype, and predictions are computed in it.

Sample weights in ``sgd`` and ``partial_fit``: each epoch draws its examples at random with
probability proportional to their weight (with replacement), so each step's expected gradient is
that of the weighted objective. ``FastSGD`` has no per-example weights; drawing keeps its speed.

Predictions come from :class:`softmaxlab.models.SoftmaxModel`, the model every trained run
becomes, and ``to_onnx`` writes it as an ONNX file (:mod:`softmaxlab.export`).

scikit-learn is an optional extra (``pip install 'softmaxlab[sklearn]'``). Without it this module
still imports, but creating a ``SoftmaxRegression`` raises ``ImportError`` saying how to install it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from .config import RECIPES, TrainConfig, lr_at
from .fast import FastSGD
from .models import ScratchSoftmaxRegression, SoftmaxModel, flat_objective, objective
from .preprocess import Standardizer

if TYPE_CHECKING:
    from .export import ExportResult

_INSTALL_HINT = (
    "SoftmaxRegression needs scikit-learn, an optional dependency of softmaxlab; "
    "install it with: pip install 'softmaxlab[sklearn]'"
)

try:
    import scipy.optimize
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedShuffleSplit
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
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

_LOG = logging.getLogger(__name__)

# L-BFGS also stops when the objective changes by less than this between iterations, relative to
# max(|objective|, 1): scikit-learn's lbfgs passes scipy ``ftol=64 * eps`` of float64. The same in
# float32, where it means "no change at all": float32 then follows float64's steps until its own
# rounding stops it.
_FTOL = 64 * np.finfo(np.float64).eps
# Memory of L-BFGS (pairs of past steps kept): twice scipy's and scikit-learn's 10. Each step
# costs a little more (in compiled code: O(history x parameters)), and fewer steps reach the same
# tolerance: on the digits' 5 folds 24-31 iterations instead of 27-33.
_LBFGS_HISTORY = 20
# Evaluations a line search may take; scikit-learn's value.
_LBFGS_MAX_LINE_SEARCH = 50
# max_iter=None: L-BFGS's iteration budget, scikit-learn's LogisticRegression's default.
_LBFGS_MAX_ITER = 100

# solver="auto" takes sgd from this many rows of X on.
_AUTO_SGD_MIN_SAMPLES = 10_000
# The sgd solver is --recipe fast; the recipe was tuned on Fashion-MNIST's training split.
_RECIPE = RECIPES["fast"]
_RECIPE_EXAMPLES = 60_000
# The recipe's optimisation steps: 5 epochs of ceil(60000 / 1024) = 59 batches.
_RECIPE_STEPS = _RECIPE["epochs"] * -(-_RECIPE_EXAMPLES // _RECIPE["batch_size"])
# The sgd solver's smallest batch on small data (smaller ones are all noise and Python).
_MIN_BATCH = 16
# partial_fit's defaults (plain SGD, one epoch per call).
_PARTIAL_FIT_LR = 0.1
_PARTIAL_FIT_BATCH = 256
# A feature whose std is at most this fraction of its |mean| (or exactly 0) counts as constant:
# the sgd solver centres it but does not scale it.
_CONSTANT_FEATURE = 1e-7
# Below this many multiply-adds in one product X W (n_samples * n_features * n_classes), fitting
# and predicting run on one torch thread (see ``_threads_for``).
_SERIAL_WORK = 2**23
# Rows per chunk when taking the features' mean and std (small enough to stay in cache).
_STATS_CHUNK = 1024

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _constraints() -> dict[str, list[Any]]:
    if _SKLEARN_IMPORT_ERROR is not None:
        return {}
    return {
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "solver": [StrOptions({"auto", "lbfgs", "sgd"})],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "warm_start": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "dtype": [StrOptions(set(_DTYPES)), None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }


# ---------------------------------------------------------------------------- arrays and tensors


def _tensor(X: np.ndarray, dtype: torch.dtype | None = None, contiguous: bool = False
            ) -> torch.Tensor:
    """A validated array as a torch tensor of ``dtype`` (None: its own), sharing its memory when
    it already has that dtype and layout (C- or Fortran-ordered; C-ordered if ``contiguous``)."""
    if X.strides and min(X.strides) < 0:  # torch takes no negative strides
        X = np.ascontiguousarray(X)
    with warnings.catch_warnings():
        # a read-only array (e.g. a memmap): torch warns that writing would be undefined; nothing
        # here writes into X, so it is shared instead of copied
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(X)
    t = t if dtype is None else t.to(dtype)
    return t.contiguous() if contiguous else t


def _full(W: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W (d, K'), b (K',) -> the softmax model's W (d, K), b (K): for binary models (K' = 1) the
    first class's column of zeros in front, so that its logits are [0, z]."""
    if W.shape[1] == 1:
        return torch.cat([torch.zeros_like(W), W], dim=1), torch.cat([torch.zeros_like(b), b])
    return W, b


def _loss_and_grad(
    W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor, alpha: float,
    sample_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The objective (weighted) mean CE + alpha/2 ||W||² and its gradients.

    W (d, K'), b (K'), X (n, d), y (n,) class indices, sample_weight (n,) summing to 1 or None
    (equal weights: ``models.objective`` itself) -> (loss (), dW (d, K'), db (K',)).
    """
    Wf, bf = _full(W, b)
    loss, dW, db = objective(Wf, bf, X, y, weight_decay=alpha, sample_weight=sample_weight)
    if W.shape[1] == 1:  # binary: the first column is the constant zero
        return loss, dW[:, 1:], db[1:]
    return loss, dW, db


def _feature_stats(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std of X (n, d) in float64, over chunks of rows; the std of a
    constant feature is 1 (it is centred, not scaled)."""
    n, d = X.shape
    s = torch.zeros(d, dtype=torch.float64)
    s2 = torch.zeros(d, dtype=torch.float64)
    for start in range(0, n, _STATS_CHUNK):
        x = X[start:start + _STATS_CHUNK].to(torch.float64)
        s += x.sum(0)
        s2 += (x * x).sum(0)
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min_(0).sqrt_()
    constant = std <= _CONSTANT_FEATURE * mean.abs()
    return mean, torch.where(constant, torch.ones_like(std), std)


def _l2_hook(model: ScratchSoftmaxRegression, decay: float) -> Callable[[torch.Tensor, int], int]:
    """A ``FastSGD`` grad_hook adding ``decay * W`` (not b) to each batch's gradient.

    FastSGD's own ``weight_decay`` (torch's SGD rule) would also shrink the intercept, which the
    objective does not penalise. The hook sees the batch's summed gradient, so it adds k times.
    """
    W_t = model.W.t()  # (C, D): contiguous once FastSGD has laid W out column-major
    size = W_t.numel()

    def hook(flat_gradient: torch.Tensor, k: int) -> int:
        flat_gradient[:size].view_as(W_t).add_(W_t, alpha=decay * k)
        return k

    return hook


@contextlib.contextmanager
def _progress(verbose: int) -> Iterator[Callable[[str], None] | None]:
    """A function writing one progress line (``verbose`` > 0), else None.

    The lines go to the logger ``softmaxlab.estimator`` at level INFO. When logging has not
    been set up (no handler anywhere), they are shown on stderr while the fit runs, as
    scikit-learn's ``verbose`` shows them.
    """
    if not verbose:
        yield None
        return
    handler = None
    if not _LOG.hasHandlers():
        handler = logging.StreamHandler()
        _LOG.addHandler(handler)
    level = _LOG.level
    _LOG.setLevel(logging.INFO)
    try:
        yield _LOG.info
    finally:
        _LOG.setLevel(level)
        if handler is not None:
            _LOG.removeHandler(handler)


@contextlib.contextmanager
def _threads_for(work: int) -> Iterator[None]:
    """Run the block on one torch thread when ``work`` (multiply-adds of one product X W) is small.

    torch splits even small kernels across its threads (MKL's products; exp and log from 2,048
    elements on), and on a small problem each split costs more than it saves: the fork and join
    of every kernel, and on a machine busy with other work a wait for the second core each time
    (a digits-sized fit then takes 10x longer on 2 threads than on 1). scikit-learn's
    LogisticRegression computes such problems on one thread as well. ``torch.set_num_threads``
    is restored afterwards; changing it starts and stops no threads (a test checks).
    """
    threads = torch.get_num_threads()
    if work >= _SERIAL_WORK or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        with _blas().limit(limits=1, user_api="blas"):  # scipy's L-BFGS-B's vector operations
            yield
    finally:
        torch.set_num_threads(threads)


@functools.cache
def _blas():
    """numpy's and scipy's BLAS thread pools (found once: looking them up takes milliseconds)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Multinomial logistic (softmax) regression with an L2 penalty, fitted with torch.

    Minimises ``weighted mean cross-entropy + alpha / 2 * ||coef_||²`` (the intercept is not
    penalised); ``alpha = 1 / (C * sum of the weights)`` (``1 / (C * n_samples)`` without
    weights) matches scikit-learn's ``LogisticRegression(C=C)``. Two-class problems use one weight
    vector (logits ``[0, z]``), exactly like binary ``LogisticRegression``. The module's
    docstring describes the solvers in full.

    Parameters
    ----------
    alpha : float, default=1e-4
        L2 penalty strength, >= 0: the objective adds ``alpha / 2 * ||W||²`` to the mean loss
        (for ``solver="sgd"``: to that of the standardised features' weights).
    solver : {"auto", "lbfgs", "sgd"}, default="auto"
        ``"lbfgs"``: exact full-batch L-BFGS. ``"sgd"``: ``softmaxlab train --recipe fast``
        (minibatch SGD with momentum on a cosine schedule, on standardised features), scaled to
        the data size. ``"auto"``: ``"sgd"`` when ``X`` has at least 10,000 rows or
        ``early_stopping=True``, else ``"lbfgs"``. ``solver_`` says which ran.
    max_iter : int or None, default=None
        L-BFGS iterations at most (None: 100), or the epochs of ``"sgd"``, which its cosine
        schedule spans (None: the recipe's 5, more on data smaller than 60,000 rows: enough for
        the recipe's 295 steps).
    tol : float, default=1e-4
        ``"lbfgs"`` has converged when the largest absolute entry of the objective's gradient
        (weights and intercept) is <= ``tol`` (scikit-learn's ``LogisticRegression`` test and
        default). With ``early_stopping``, the improvement in validation accuracy that counts.
    lr : float or None, default=None
        Learning rate, > 0. None: 0.08 for ``"sgd"`` (the recipe's, the schedule's peak) and 0.1
        for ``partial_fit``.
    batch_size : int or None, default=None
        Minibatch size, >= 1. None: for ``"sgd"`` the recipe's 1024 scaled by
        ``n_samples / 60000`` (16 to 1024); 256 for ``partial_fit``.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, ``{label: weight}`` (labels not in it get 1); ``"balanced"``:
        ``n_samples / (n_classes * count of the class)`` (weighted counts with
        ``sample_weight``), as in scikit-learn. They multiply ``sample_weight``. ``partial_fit``
        takes a dict only.
    warm_start : bool, default=False
        When True, ``fit`` starts from the previous fit's ``coef_`` and ``intercept_`` (which
        need the same classes and features) instead of from zero.
    early_stopping : bool, default=False
        ``"sgd"`` only (with ``solver="auto"`` it selects ``"sgd"``): hold out a stratified
        ``validation_fraction`` of the training data and stop when the validation accuracy has
        not improved by at least ``tol`` for ``n_iter_no_change`` epochs in a row, as
        ``SGDClassifier`` does; the weights of the best validation accuracy are kept (as
        ``MLPClassifier`` does). Ignored by ``"lbfgs"``.
    validation_fraction : float, default=0.1
        Share of the training data held out for ``early_stopping``, in (0, 1).
    n_iter_no_change : int, default=5
        Epochs without improvement before ``early_stopping`` stops, >= 1.
    dtype : {"float32", "float64"} or None, default=None
        Precision of the computation and of ``coef_``. None: float64 for float64 ``X`` with
        ``"lbfgs"`` and ``partial_fit``, else float32.
    verbose : int, default=0
        > 0: one line per L-BFGS evaluation or SGD epoch, logged to ``softmaxlab.estimator``
        (shown on stderr when logging is not set up).
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffles (and weighted draws) of ``"sgd"`` and ``partial_fit`` and the
        ``early_stopping`` split; each epoch's shuffle derives from it and the epoch number.
        ``"lbfgs"`` is deterministic.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted class labels.
    coef_ : ndarray of shape (n_classes, n_features), or (1, n_features) for two classes
        The weights, for ``X`` as given.
    intercept_ : ndarray of shape (n_classes,), or (1,) for two classes
        The intercepts; for K >= 3 classes they are centred to sum to zero (softmax is unchanged
        by a common shift and the intercept is not penalised, so only differences matter).
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` had string column names (e.g. a DataFrame).
    n_iter_ : int
        L-BFGS iterations or SGD epochs run by the last ``fit``, or the number of
        ``partial_fit`` epochs run since the last ``fit`` (or since the first ``partial_fit``).
    solver_ : str
        The solver the last ``fit`` used (``"lbfgs"`` or ``"sgd"``; ``"sgd"`` for
        ``partial_fit``).
    loss_curve_ : list of float
        ``"sgd"``: the mean training cross-entropy of each epoch (over its batches, as they
        were trained). Not set by ``"lbfgs"``.
    validation_scores_ : list of float or None
        ``"sgd"`` with ``early_stopping``: the validation accuracy after each epoch; else None.
    best_validation_score_ : float or None
        The best of ``validation_scores_`` (its weights are the ones kept), or None.
    """

    _parameter_constraints: dict = _constraints()

    def __init__(
        self,
        alpha: float = 1e-4,
        solver: str = "auto",
        max_iter: int | None = None,
        tol: float = 1e-4,
        lr: float | None = None,
        batch_size: int | None = None,
        class_weight: dict | str | None = None,
        warm_start: bool = False,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        dtype: str | None = None,
        verbose: int = 0,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.alpha = alpha
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.lr = lr
        self.batch_size = batch_size
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.verbose = verbose
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
            ) -> SoftmaxRegression:
        """Fit the model with the solver chosen by ``solver`` (see the class docstring).

        X (n_samples, n_features) of any numeric dtype (uint8 images are read without a copy
        by ``"sgd"``), y (n_samples,) labels of any kind, sample_weight (n_samples,) >= 0 or
        None. ``"lbfgs"`` warns with ``ConvergenceWarning`` if ``max_iter`` iterations did not
        reach ``tol``. Returns self.
        """
        self._validate_params()
        X, y = validate_data(self, X, y)  # numeric dtypes are kept as they are
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        self._check_n_classes(classes)
        raw_weight, weight = self._sample_weights(X, y, y_idx, classes, sample_weight,
                                                  self.class_weight)
        solver = self._resolve_solver(X.shape[0])
        dtype = self._compute_dtype(X.dtype, solver)
        start = self._warm_start(classes, X.shape[1], dtype)
        yt = torch.from_numpy(y_idx.reshape(-1).astype(np.int64, copy=False))
        k = 1 if len(classes) == 2 else len(classes)
        self._clear_sgd_attributes()
        with _progress(self.verbose) as log, _threads_for(X.size * len(classes)):
            if solver == "lbfgs":
                W, b, n_iter = self._fit_lbfgs(X, yt, weight, k, start, dtype, log)
            else:
                W, b, n_iter = self._fit_sgd(X, yt, raw_weight, weight, k, start, dtype, log)
        self.classes_ = classes
        self.solver_ = solver
        self._input_dtype = X.dtype.name
        self._store(W, b)
        self.n_iter_ = n_iter
        self._n_epochs = 0
        return self

    def _fit_lbfgs(self, X: np.ndarray, y: torch.Tensor, weight: np.ndarray | None, k: int,
                   start: tuple[torch.Tensor, torch.Tensor] | None, dtype: torch.dtype,
                   log: Callable[[str], None] | None
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Full-batch L-BFGS from ``start`` (or zero): (W (d, k), b (k,), iterations)."""
        Xt = _tensor(X, dtype)
        d = X.shape[1]
        size = d * k  # the parameters, flat: W (d, k) row-major, then b (k,)
        x0 = np.zeros(size + k)
        if start is not None:
            x0[:size], x0[size:] = start[0].reshape(-1).numpy(), start[1].numpy()
        sw = None if weight is None else torch.from_numpy(weight / weight.sum()).to(dtype)
        alpha = float(self.alpha)
        max_iter = self.max_iter or _LBFGS_MAX_ITER
        evals = 0

        def objective_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
            nonlocal evals
            theta = torch.from_numpy(x).to(dtype)  # (float64: a view of x)
            if k > 1:  # theta's layout is flat_objective's: its gradient needs no reshaping
                loss, grad = flat_objective(theta, Xt, y, alpha, sw)
                flat = grad.numpy()
            else:
                value, dW, db = _loss_and_grad(theta[:size].view(d, k), theta[size:], Xt, y,
                                               alpha, sw)
                loss, flat = float(value), np.concatenate([dW.reshape(-1).numpy(), db.numpy()])
            evals += 1
            if log is not None:
                log(f"L-BFGS evaluation {evals}: objective {loss:.8g}")
            return loss, flat.astype(np.float64, copy=False)

        # scipy's L-BFGS-B with scikit-learn's options (but the longer history): the algorithm
        # and the convergence test of LogisticRegression's lbfgs; its steps are compiled code, so a small problem's time is
        # the objective's (torch's own L-BFGS spends as long again in Python per step)
        result = scipy.optimize.minimize(
            objective_and_gradient, x0, jac=True, method="L-BFGS-B",
            options={"maxiter": max_iter, "maxls": _LBFGS_MAX_LINE_SEARCH, "gtol": self.tol,
                     "ftol": _FTOL, "maxcor": _LBFGS_HISTORY},
        )
        n_iter = int(result.nit)
        grad_max = float(np.abs(result.jac).max())  # (at the solution: no extra evaluation)
        if log is not None:
            log(f"L-BFGS: {n_iter} iterations, {evals} evaluations, largest gradient entry "
                f"{grad_max:.3g} (tol {self.tol:g}): {result.message}")
        # Like scikit-learn, warn when the iteration budget ran out. Stopping earlier without
        # reaching tol means no progress was possible (the loss or step stalled at rounding level).
        if n_iter >= max_iter and grad_max > self.tol:
            warnings.warn(
                f"L-BFGS did not converge in max_iter={max_iter} iterations: the largest "
                f"gradient entry is {grad_max:.3g} > tol={self.tol}. Increase max_iter, scale the "
                "data (e.g. StandardScaler) or increase alpha.",
                ConvergenceWarning,
                stacklevel=3,
            )
        theta = torch.from_numpy(result.x).to(dtype)
        return theta[:size].view(d, k), theta[size:], n_iter

    def _fit_sgd(self, X: np.ndarray, y: torch.Tensor, raw_weight: np.ndarray | None,
                 weight: np.ndarray | None, k: int,
                 start: tuple[torch.Tensor, torch.Tensor] | None, dtype: torch.dtype,
                 log: Callable[[str], None] | None
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """--recipe fast on standardised features: (W (d, k), b (k,) for X as given, epochs)."""
        n, d = X.shape
        seed = self._seed()
        train_idx, val_idx = np.arange(n), None
        if self.early_stopping:
            train_idx, val_idx = self._validation_split(y.numpy(), raw_weight, seed)
        n_train = len(train_idx)
        batch_size = self.batch_size or min(_RECIPE["batch_size"], max(
            _MIN_BATCH, round(n_train * _RECIPE["batch_size"] / _RECIPE_EXAMPLES)))
        epochs = self.max_iter or max(_RECIPE["epochs"],
                                      -(-_RECIPE_STEPS // -(-n_train // batch_size)))
        schedule = TrainConfig(**{**_RECIPE, "epochs": epochs, "lr": self.lr or _RECIPE["lr"]})

        inputs = _tensor(X, None if X.dtype == np.uint8 else dtype, contiguous=True)
        # FastSGD scales uint8 batches to [0, 1] (x / 255): the model sees X / unit
        unit = 255.0 if inputs.dtype == torch.uint8 else 1.0
        mean, std = _feature_stats(inputs)  # in X's units, float64
        standardizer = Standardizer((mean / unit).to(dtype), (std / unit).to(dtype))

        # the weights for standardised features z = (x - mean) / std: x W + b = z W_s + b_s
        W, b = start if start is not None else (torch.zeros(d, k, dtype=dtype),
                                                torch.zeros(k, dtype=dtype))
        W_s = W.double() * std.unsqueeze(1)
        b_s = b.double() + mean @ W.double()
        model, lr_factor, decay = self._sgd_model(W_s.to(dtype), b_s.to(dtype), float(self.alpha))
        optimizer = FastSGD(model, "ce", schedule.learning_rate, _RECIPE["momentum"], 0.0)
        hook = _l2_hook(model, decay) if decay else None

        validation = None
        if val_idx is not None:
            val_idx_t = torch.from_numpy(val_idx)
            Z_val = standardizer(inputs.index_select(0, val_idx_t).to(dtype) / unit)
            val_weight = None if raw_weight is None else torch.from_numpy(raw_weight[val_idx])
            validation = (Z_val, y.index_select(0, val_idx_t), val_weight)
        draw_weight = None if weight is None else weight[train_idx]

        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] | None = [] if validation is not None else None
        self.best_validation_score_: float | None = None
        best: tuple[torch.Tensor, torch.Tensor] | None = None
        stale = 0
        epoch = 0
        for epoch in range(1, epochs + 1):
            optimizer.lr = lr_at(schedule, epoch - 1) * lr_factor
            order = torch.from_numpy(self._epoch_order(train_idx, draw_weight, seed, epoch - 1))
            loss, acc = optimizer.train_epoch(inputs, y, batch_size, order,
                                              prepare=standardizer.apply_, grad_hook=hook)
            if not (math.isfinite(loss) and bool(torch.isfinite(model.W).all())):
                raise ValueError(
                    f"SGD diverged in epoch {epoch}: the training loss became {loss}. Use a "
                    f"smaller lr than {optimizer.lr / lr_factor:g}, or solver='lbfgs'.")
            self.loss_curve_.append(loss)
            line = (f"SGD epoch {epoch}/{epochs}: lr {optimizer.lr / lr_factor:.4g}, training "
                    f"loss {loss:.5f}, training accuracy {acc:.4f}")
            if validation is not None:
                score = self._validation_score(model, validation)
                self.validation_scores_.append(score)
                line += f", validation accuracy {score:.4f}"
                # SGDClassifier's rule: an epoch counts as an improvement when it beats the best
                # score so far by at least tol
                if self.best_validation_score_ is not None and \
                        score < self.best_validation_score_ + self.tol:
                    stale += 1
                else:
                    stale = 0
                if self.best_validation_score_ is None or score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best = (model.W.detach().clone(), model.b.detach().clone())
            if log is not None:
                log(line)
            if validation is not None and stale >= self.n_iter_no_change:
                if log is not None:
                    log(f"early stopping: no improvement by tol={self.tol:g} in "
                        f"{self.n_iter_no_change} epochs; keeping the weights of the best "
                        f"validation accuracy, {self.best_validation_score_:.4f}")
                break

        W_s, b_s = best if best is not None else (model.W.detach(), model.b.detach())
        if k == 1:  # the two-column model's weights -> the binary model's (logits [0, z])
            W_s, b_s = W_s[:, 1:] - W_s[:, :1], b_s[1:] - b_s[:1]
        W_s, b_s = W_s.double(), b_s.double()
        W = W_s / std.unsqueeze(1)
        b = b_s - mean @ W
        return W.to(dtype), b.to(dtype), epoch

    def partial_fit(
        self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> SoftmaxRegression:
        """Run one epoch of shuffled minibatch SGD on (X, y); starts from W = 0 on the first call.

        X (n_samples, n_features), y (n_samples,). ``classes`` (all labels that will ever be
        seen) is required on the first call; later calls may omit it, must pass the same set if
        they give it, and their labels must be in ``classes_``. ``sample_weight`` (n_samples,)
        >= 0 or None; ``class_weight`` must be a dict or None here (``"balanced"`` needs all the
        data: compute it with ``sklearn.utils.class_weight.compute_class_weight`` on a large
        enough sample of y and pass the dict). Plain SGD: step ``lr`` (default 0.1), no
        momentum, ``batch_size`` (default 256), on X as given (no standardisation). Returns self.
        """
        self._validate_params()
        first_call = not hasattr(self, "classes_")
        if first_call and classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit: give every label "
                "that can occur, e.g. classes=np.unique(y_all)."
            )
        if self.class_weight == "balanced":
            raise ValueError(
                f"class_weight={self.class_weight!r} is not supported by partial_fit: it needs "
                "the class counts of all the data. Compute the weights with sklearn.utils."
                "class_weight.compute_class_weight('balanced', classes=classes, y=y) on a large "
                "enough sample of y and pass them as a dict: class_weight={label: weight}."
            )
        X, y = validate_data(self, X, y, reset=first_call)
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
        y_idx = np.searchsorted(known, y)
        _, weight = self._sample_weights(X, y, y_idx, known, sample_weight, self.class_weight,
                                         check_classes=False)

        k = 1 if len(known) == 2 else len(known)
        if first_call:
            dtype = self._compute_dtype(X.dtype, "partial_fit")
            W = torch.zeros(X.shape[1], k, dtype=dtype)
            b = torch.zeros(k, dtype=dtype)
            epoch = 0
        else:
            W = torch.from_numpy(self.coef_.T.copy())
            b = torch.from_numpy(self.intercept_.copy())
            dtype = W.dtype
            epoch = getattr(self, "_n_epochs", 0)

        inputs = _tensor(X, None if X.dtype == np.uint8 else dtype, contiguous=True)
        unit = 255.0 if inputs.dtype == torch.uint8 else 1.0  # FastSGD's batches are X / unit
        model, lr_factor, decay = self._sgd_model(W * unit, b, float(self.alpha) / unit**2)
        optimizer = FastSGD(model, "ce", (self.lr or _PARTIAL_FIT_LR) * lr_factor)
        hook = _l2_hook(model, decay) if decay else None
        order = self._epoch_order(np.arange(X.shape[0]), weight, self._seed(), epoch)
        yt = torch.from_numpy(y_idx.astype(np.int64))
        with _threads_for(X.size * len(known)):
            optimizer.train_epoch(inputs, yt, self.batch_size or _PARTIAL_FIT_BATCH,
                                  torch.from_numpy(order), grad_hook=hook)

        W, b = model.W.detach(), model.b.detach()
        if k == 1:
            W, b = W[:, 1:] - W[:, :1], b[1:] - b[:1]
        self.classes_ = known
        self.solver_ = "sgd"
        if first_call:
            self._input_dtype = X.dtype.name
        self._store(W / unit, b)
        self._n_epochs = epoch + 1
        self.n_iter_ = self._n_epochs
        return self

    # ------------------------------------------------------------------ prediction

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Scores ``X @ coef_.T + intercept_``: (n_samples, n_classes), or (n_samples,) for two
        classes (the log-odds of ``classes_[1]``)."""
        model = self._model()  # (first: the not-fitted check)
        X = self._validated(X)
        with _threads_for(X.numel() * model.W.shape[1]):
            Z = model.logits(X)
        return Z[:, 1].numpy() if self.coef_.shape[0] == 1 else Z.numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Most probable class label for each row. X (n_samples, n_features) -> (n_samples,)."""
        model = self._model()
        X = self._validated(X)
        with _threads_for(X.numel() * model.W.shape[1]):
            return self.classes_[model.predict(X).numpy()]

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (softmax of the logits), columns in ``classes_`` order.

        X (n_samples, n_features) -> (n_samples, n_classes); rows sum to 1.
        """
        model = self._model()
        X = self._validated(X)
        with _threads_for(X.numel() * model.W.shape[1]):
            return model.predict_proba(X).numpy()

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Log class probabilities by a stable log-softmax (finite even where proba underflows).

        X (n_samples, n_features) -> (n_samples, n_classes).
        """
        model = self._model()
        X = self._validated(X)
        with _threads_for(X.numel() * model.W.shape[1]):
            return model.predict_log_proba(X).numpy()

    # ------------------------------------------------------------------ export

    def to_onnx(self, path: str | os.PathLike, sample: ArrayLike | None = None) -> ExportResult:
        """Write the fitted model as an ONNX file that onnxruntime (or any ONNX runtime) runs.

        The graph's input ``input`` is (N, n_features) of the dtype ``fit`` was given (uint8,
        float32 or float64; other dtypes: the model's float dtype); its outputs are ``label``
        (N,) int64, the index into ``classes_``, and ``probabilities`` (N, n_classes). The class
        labels are in the model's metadata (``class_names``, a JSON list of strings). Before the
        file is written, onnxruntime runs it on ``sample`` (default: 256 random rows) and its
        predictions are compared with ``predict_proba``'s. Needs ``pip install
        'softmaxlab[onnx]'``. Returns an ``ExportResult`` (path, the check's figures).
        """
        from .export import InputSpec, to_onnx

        model = self._model()  # (first: the not-fitted check)
        input_dtype = getattr(self, "_input_dtype", None)  # (None: pickled by an older version)
        if input_dtype not in ("uint8", "float32", "float64"):
            input_dtype = str(self.coef_.dtype)
        spec = InputSpec(input_dtype, (self.n_features_in_,))
        if sample is not None:
            sample = validate_data(self, sample, dtype=np.dtype(input_dtype), reset=False)
        return to_onnx(model, path, spec, sample)

    # ------------------------------------------------------------------ helpers

    def _model(self) -> SoftmaxModel:
        """The fitted model as a ``SoftmaxModel`` (binary: logits [0, z]), with the class labels
        as its class names."""
        check_is_fitted(self)
        W = torch.from_numpy(self.coef_).t()
        return SoftmaxModel(*_full(W, torch.from_numpy(self.intercept_)),
                            class_names=tuple(str(c) for c in self.classes_))

    def _validated(self, X: ArrayLike) -> torch.Tensor:
        """X (n, d) validated against the fit, as a tensor (float32 or float64; shared, not
        copied, when it already is one)."""
        other = np.float32 if self.coef_.dtype == np.float64 else np.float64
        return _tensor(validate_data(self, X, dtype=[self.coef_.dtype, other], reset=False))

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

    def _sample_weights(self, X: np.ndarray, y: np.ndarray, y_idx: np.ndarray,
                        classes: np.ndarray, sample_weight: ArrayLike | None,
                        class_weight: dict | str | None, check_classes: bool = True
                        ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(sample_weight, sample_weight * class weight of y) as float64 (n,), None where all
        are equal (the unweighted objective is then the same)."""
        if sample_weight is None and class_weight is None:
            return None, None
        raw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        weight = raw
        if class_weight is not None:
            per_class = compute_class_weight(class_weight, classes=classes, y=y,
                                             sample_weight=raw)
            weight = raw * per_class[y_idx]
        if check_classes:
            weighted = np.unique(y_idx[weight > 0])
            if len(weighted) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs positive weight on at least 2 classes, but "
                    f"sample_weight and class_weight leave only class "
                    f"{classes[weighted].tolist()} with positive weight."
                )
        if weight.sum() <= 0:
            raise ValueError("the sample weights (times the class weights) are all zero: give "
                             "at least one sample a positive weight")
        raw = None if np.all(raw == raw[0]) else raw
        weight = None if np.all(weight == weight[0]) else weight
        return raw, weight

    def _resolve_solver(self, n_samples: int) -> str:
        if self.solver != "auto":
            return self.solver
        return "sgd" if self.early_stopping or n_samples >= _AUTO_SGD_MIN_SAMPLES else "lbfgs"

    def _compute_dtype(self, x_dtype: np.dtype, solver: str) -> torch.dtype:
        if self.dtype is not None:
            return _DTYPES[self.dtype]
        if solver != "sgd" and x_dtype == np.float64:
            return torch.float64
        return torch.float32

    def _warm_start(self, classes: np.ndarray, n_features: int, dtype: torch.dtype
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The previous fit's (W (d, K'), b (K')) of ``dtype`` with warm_start, else None."""
        if not self.warm_start or not hasattr(self, "coef_"):
            return None
        if not np.array_equal(classes, self.classes_) or self.coef_.shape[1] != n_features:
            raise ValueError(
                f"warm_start=True continues the previous fit (classes {self.classes_.tolist()}, "
                f"{self.coef_.shape[1]} features), but this data has classes "
                f"{classes.tolist()} and {n_features} features. Set warm_start=False to start "
                "from zero."
            )
        return (torch.from_numpy(self.coef_.T.copy()).to(dtype),
                torch.from_numpy(self.intercept_.copy()).to(dtype))

    @staticmethod
    def _sgd_model(W: torch.Tensor, b: torch.Tensor, alpha: float
                   ) -> tuple[ScratchSoftmaxRegression, float, float]:
        """(model, lr factor, weight decay) that ``FastSGD`` trains for W (d, K'), b (K').

        Binary models (K' = 1, logits [0, z]) become the two-column softmax with W = [-w/2,
        w/2]: its columns' gradients are opposite, so it stays of that form, and with half the
        learning rate and twice the decay each step is exactly the binary model's step on w.
        """
        if W.shape[1] == 1:
            return ScratchSoftmaxRegression(torch.cat([-W / 2, W / 2], 1),
                                            torch.cat([-b / 2, b / 2])), 0.5, 2 * alpha
        return ScratchSoftmaxRegression(W, b), 1.0, alpha

    def _validation_split(self, y: np.ndarray, raw_weight: np.ndarray | None, seed: int
                          ) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, validation rows) for early stopping: stratified, as SGDClassifier."""
        split = StratifiedShuffleSplit(test_size=self.validation_fraction, random_state=seed)
        try:
            train_idx, val_idx = next(split.split(np.zeros((len(y), 1)), y))
        except ValueError as e:
            raise ValueError(
                f"early_stopping needs a validation set with every class: {e} Use a larger "
                "validation_fraction, more data, or early_stopping=False."
            ) from None
        if raw_weight is not None and raw_weight[val_idx].sum() <= 0:
            raise ValueError("the sample weights of the validation set are all zero; use "
                             "another random_state or a larger validation_fraction")
        return np.sort(train_idx), np.sort(val_idx)

    @staticmethod
    def _validation_score(model: ScratchSoftmaxRegression,
                          validation: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
                          ) -> float:
        """Accuracy (weighted by sample_weight) of the model on the standardised validation set."""
        Z, y, weight = validation
        with torch.no_grad():
            correct = (torch.addmm(model.b, Z, model.W).argmax(1) == y)
        if weight is None:
            return float(correct.double().mean())
        return float((correct.double() * weight).sum() / weight.sum())

    def _seed(self) -> int:
        """The base seed of this call's shuffles, from ``random_state``."""
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        # None (global numpy RNG) or a RandomState, which this draw advances
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    @staticmethod
    def _epoch_order(rows: np.ndarray, weight: np.ndarray | None, seed: int, epoch: int
                     ) -> np.ndarray:
        """The rows of an epoch, in its order: a permutation of ``rows``, or with ``weight`` (of
        each row) as many draws with replacement, each row with probability proportional to its
        weight. Seeded by (seed, epoch)."""
        rng = np.random.default_rng([seed, epoch])
        if weight is None:
            return rng.permutation(rows)
        return rng.choice(rows, size=len(rows), p=weight / weight.sum())

    def _clear_sgd_attributes(self) -> None:
        for name in ("loss_curve_", "validation_scores_", "best_validation_score_"):
            if hasattr(self, name):
                delattr(self, name)
