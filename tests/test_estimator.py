"""Tests of the scikit-learn estimator ``softmaxlab.SoftmaxRegression``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import softmaxlab
from softmaxlab import functional as F
from softmaxlab.estimator import SoftmaxRegression, _loss_and_grad

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


# ---------------------------------------------------------------- scikit-learn's own checks


# Some checks fit unscaled iris with the default max_iter=100, which legitimately needs more
# iterations; the warning is the estimator working as documented, not a failure.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [SoftmaxRegression(), SoftmaxRegression(solver="sgd")],
    expected_failed_checks=lambda est: {
        "check_sample_weight_equivalence_on_dense_data": (
            "sgd draws each epoch's examples in proportion to their weights: weights equal "
            "repetitions in expectation, not run by run"
        )
    } if est.solver == "sgd" else {},
)
def test_sklearn_check_estimator(estimator, check):
    # Two checks may be reported as skipped by scikit-learn itself, depending on the environment:
    # check_classifier_data_not_an_array needs pandas, check_array_api_input needs the
    # SCIPY_ARRAY_API=1 environment variable. Both pass when those are available.
    check(estimator)


# ---------------------------------------------------------------- agreement with LogisticRegression


def test_digits_accuracy_comparable_to_logistic_regression(digits):
    X_tr, X_te, y_tr, y_te = digits
    ours = SoftmaxRegression().fit(X_tr, y_tr)
    # Same objective: alpha = 1 / (C * n_samples).
    C = 1.0 / (ours.alpha * len(y_tr))
    ref = LogisticRegression(C=C, max_iter=1000).fit(X_tr, y_tr)
    acc_ours, acc_ref = ours.score(X_te, y_te), ref.score(X_te, y_te)
    assert acc_ours > 0.94
    assert abs(acc_ours - acc_ref) <= 0.02, (acc_ours, acc_ref)
    # and against scikit-learn's default regularisation (C=1)
    acc_default = LogisticRegression(max_iter=1000).fit(X_tr, y_tr).score(X_te, y_te)
    assert abs(acc_ours - acc_default) <= 0.02, (acc_ours, acc_default)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_matches_logistic_regression_with_matched_regularisation(n_classes):
    X, y = make_classification(
        n_samples=200, n_features=5, n_informative=3, n_redundant=0,
        n_classes=n_classes, random_state=0,
    )  # fmt: skip
    alpha = 0.01
    ours = SoftmaxRegression(alpha=alpha, tol=1e-10, max_iter=1000).fit(X, y)
    ref = LogisticRegression(C=1.0 / (alpha * len(y)), tol=1e-10, max_iter=1000).fit(X, y)
    assert ours.coef_.shape == ref.coef_.shape
    assert ours.intercept_.shape == ref.intercept_.shape
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-5)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-5)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), atol=1e-5)
    assert ours.n_iter_ < 1000


def test_analytic_gradient_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(30, 4, dtype=torch.float64, generator=gen)
    for k, n_classes in [(1, 2), (3, 3)]:
        y = torch.randint(0, n_classes, (30,), generator=gen)
        W = torch.randn(4, k, dtype=torch.float64, generator=gen, requires_grad=True)
        b = torch.randn(k, dtype=torch.float64, generator=gen, requires_grad=True)
        loss, dW, db = _loss_and_grad(W.detach(), b.detach(), X, y, alpha=0.3)
        Z = X @ W + b
        logits = torch.cat([torch.zeros_like(Z), Z], 1) if k == 1 else Z
        ref = F.cross_entropy(logits, y) + 0.15 * (W**2).sum()
        ref.backward()
        assert torch.allclose(loss, ref.detach())
        assert torch.allclose(dW, W.grad)
        assert torch.allclose(db, b.grad)


# ---------------------------------------------------------------- labels and output shapes


def test_string_labels_multiclass():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = SoftmaxRegression(max_iter=500).fit(X, names)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    pred = clf.predict(X)
    assert pred.dtype.kind == "U" and set(pred) <= set(clf.classes_)
    assert clf.score(X, names) > 0.95
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3) and clf.coef_.shape == (3, 4) and clf.intercept_.shape == (3,)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], pred)
    assert clf.decision_function(X).shape == (150, 3)
    assert abs(clf.intercept_.sum()) < 1e-10  # intercepts are centred


def test_non_contiguous_int_labels():
    X, y = load_iris(return_X_y=True)
    labels = np.array([-3, 7, 100])[y]
    clf = SoftmaxRegression(max_iter=500).fit(X, labels)
    assert clf.classes_.tolist() == [-3, 7, 100]
    assert set(clf.predict(X)) <= {-3, 7, 100}
    assert clf.score(X, labels) > 0.95


def test_binary_decision_function_and_consistency():
    X, y = make_classification(n_samples=120, n_features=4, random_state=1)
    labels = np.where(y == 1, "spam", "ham")
    clf = SoftmaxRegression().fit(X, labels)
    assert clf.classes_.tolist() == ["ham", "spam"]
    assert clf.coef_.shape == (1, 4) and clf.intercept_.shape == (1,)
    d = clf.decision_function(X)
    assert d.shape == (120,)
    np.testing.assert_allclose(d, X @ clf.coef_[0] + clf.intercept_[0])
    proba = clf.predict_proba(X)
    assert proba.shape == (120, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(proba[:, 1], 1.0 / (1.0 + np.exp(-d)))  # sigmoid of the score
    pred = clf.predict(X)
    np.testing.assert_array_equal(pred, np.where(d > 0, "spam", "ham"))
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(1)])
    assert clf.score(X, labels) > 0.85


def test_predict_log_proba_is_stable():
    X, y = load_iris(return_X_y=True)
    clf = SoftmaxRegression(alpha=1e-3, max_iter=500).fit(X, y)
    big = X * 1e4  # logits differ by ~1e4: probabilities underflow to 0
    log_p = clf.predict_log_proba(big)
    assert np.isfinite(log_p).all()
    assert (clf.predict_proba(big) == 0).any()
    np.testing.assert_allclose(np.exp(log_p).sum(1), 1.0)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(clf.predict_proba(X)), rtol=1e-10)


# ---------------------------------------------------------------- convergence


def test_n_iter_and_convergence_warning(digits):
    X_tr, _, y_tr, _ = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        clf = SoftmaxRegression(max_iter=2).fit(X_tr, y_tr)
    assert clf.n_iter_ == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = SoftmaxRegression(alpha=1e-2, max_iter=500).fit(X_tr, y_tr)
    assert 1 <= clf.n_iter_ < 500


# ---------------------------------------------------------------- partial_fit


def test_partial_fit_requires_classes_on_first_call():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        SoftmaxRegression().partial_fit(X, y)


def test_partial_fit_rejects_unknown_labels_and_other_classes():
    X, y = load_iris(return_X_y=True)
    clf = SoftmaxRegression(random_state=0).partial_fit(X[y < 2], y[y < 2], classes=[0, 1])
    with pytest.raises(ValueError, match=r"labels \[2\] that are not in classes \[0, 1\]"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="is not the same as"):
        clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    with pytest.raises(ValueError, match="only one class"):
        SoftmaxRegression().partial_fit(X, y, classes=[1])


def test_partial_fit_improves_accuracy(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = SoftmaxRegression(lr=0.1, batch_size=64, random_state=0)
    classes = np.unique(y_tr)
    clf.partial_fit(X_tr, y_tr, classes=classes)
    first = clf.score(X_te, y_te)
    assert clf.n_iter_ == 1
    for _ in range(9):
        clf.partial_fit(X_tr, y_tr)
    assert clf.n_iter_ == 10
    last = clf.score(X_te, y_te)
    assert last > first + 0.02, (first, last)
    assert last > 0.93


def test_partial_fit_is_reproducible_and_minimises_the_fit_objective():
    X, y = make_classification(n_samples=300, n_features=5, n_informative=3, random_state=2)

    def run(seed, epochs):
        clf = SoftmaxRegression(alpha=0.01, lr=0.2, batch_size=64, random_state=seed)
        for _ in range(epochs):
            clf.partial_fit(X, y, classes=[0, 1])
        return clf

    a, b = run(0, 3), run(0, 3)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert not np.allclose(a.coef_, run(1, 3).coef_)  # the seed matters

    def objective(clf):
        W = torch.from_numpy(clf.coef_.T.copy())
        bias = torch.from_numpy(clf.intercept_.copy())
        return float(_loss_and_grad(W, bias, torch.from_numpy(X), torch.from_numpy(y), 0.01)[0])

    exact = SoftmaxRegression(alpha=0.01, tol=1e-10, max_iter=1000).fit(X, y)
    sgd = run(0, 60)
    assert objective(exact) <= objective(sgd) < objective(exact) + 1e-3
    np.testing.assert_allclose(sgd.coef_, exact.coef_, atol=0.03)


def test_partial_fit_after_fit_continues_from_fitted_weights():
    X, y = load_iris(return_X_y=True)
    clf = SoftmaxRegression(alpha=1e-2, max_iter=500, lr=1e-3, random_state=0).fit(X, y)
    before = clf.coef_.copy()
    clf.partial_fit(X, y)  # classes_ is known from fit
    assert clf.n_iter_ == 1
    assert np.abs(clf.coef_ - before).max() < 0.05  # a small step from the optimum, not a reset
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.partial_fit(X[:, :3], y)


# ---------------------------------------------------------------- errors


def test_not_fitted_error():
    X, _ = load_iris(return_X_y=True)
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            getattr(SoftmaxRegression(), method)(X)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alpha": -1.0}, r"'alpha' parameter .* range \[0.0, inf\)\. Got -1.0 instead"),
        ({"max_iter": 0}, r"'max_iter' parameter .* range \[1, inf\) or None\. Got 0 instead"),
        ({"tol": -1e-3}, r"'tol' parameter .* range \[0.0, inf\)\. Got -0.001 instead"),
        ({"lr": 0.0}, r"'lr' parameter .* range \(0.0, inf\) or None\. Got 0.0 instead"),
        ({"batch_size": 0}, r"'batch_size' parameter .* range \[1, inf\) or None\. Got 0 "),
        ({"solver": "newton"}, r"'solver' parameter .* str among \{.*'lbfgs'.*\}\. Got 'newton'"),
        ({"class_weight": "even"}, r"'class_weight' parameter .* Got 'even' instead"),
        ({"validation_fraction": 1.0}, r"'validation_fraction' parameter .* range \(0.0, 1.0\)"),
        ({"n_iter_no_change": 0}, r"'n_iter_no_change' parameter .* range \[1, inf\)"),
        ({"dtype": "float16"}, r"'dtype' parameter .* Got 'float16' instead"),
    ],
)
def test_bad_params_raise_value_error(params, match):
    X, y = load_iris(return_X_y=True)
    clf = SoftmaxRegression(**params)  # __init__ does not validate
    assert clf.get_params()[next(iter(params))] == next(iter(params.values()))
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)
    with pytest.raises(ValueError, match=match):
        clf.partial_fit(X, y, classes=[0, 1, 2])


def test_one_class_raises():
    X, _ = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="only one class"):
        SoftmaxRegression().fit(X, np.zeros(len(X)))


def test_import_error_without_sklearn():
    src = Path(softmaxlab.__file__).resolve().parents[1]
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # make `import sklearn` fail like a missing install
        import softmaxlab
        cls = softmaxlab.SoftmaxRegression  # importing the module works without sklearn
        try:
            cls(alpha=1.0)
        except ImportError as e:
            print("IMPORT-ERROR:", e)
        else:
            print("NO ERROR")
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "IMPORT-ERROR:" in out.stdout, out.stdout
    assert "pip install 'softmaxlab[sklearn]'" in out.stdout
