"""``SoftmaxRegression``'s options from scikit-learn: sample and class weights, warm starts,
early stopping, verbose, n_iter_ and the precision."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight

import softmaxlab
from softmaxlab.estimator import SoftmaxRegression

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    """Standardised digits, split 75/25, stratified."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


def problem(n_classes: int, n: int = 300, seed: int = 0):
    return make_classification(n_samples=n, n_features=5, n_informative=3, n_redundant=0,
                               n_classes=n_classes, weights=None, random_state=seed)


def exact(**params) -> SoftmaxRegression:
    return SoftmaxRegression(solver="lbfgs", tol=1e-10, max_iter=2000, **params)


def reference(C: float, **params) -> LogisticRegression:
    return LogisticRegression(C=C, tol=1e-10, max_iter=2000, **params)


def assert_same_model(ours: SoftmaxRegression, ref: LogisticRegression, X: np.ndarray,
                      atol: float = 1e-5) -> None:
    assert ours.coef_.shape == ref.coef_.shape
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=atol)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=atol)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=atol)


# ---------------------------------------------------------------- sample_weight


@pytest.mark.parametrize("n_classes", [2, 3])
def test_sample_weight_matches_logistic_regression(n_classes):
    X, y = problem(n_classes)
    sw = np.random.default_rng(1).uniform(0, 3, len(y))
    alpha = 0.01
    ours = exact(alpha=alpha).fit(X, y, sample_weight=sw)
    ref = reference(1 / (alpha * sw.sum())).fit(X, y, sample_weight=sw)
    assert_same_model(ours, ref, X)
    assert not np.allclose(ours.coef_, exact(alpha=alpha).fit(X, y).coef_, atol=1e-3)


def test_integer_weights_repeat_and_zero_weights_remove_examples():
    X, y = problem(3, n=120)
    sw = np.random.default_rng(2).integers(0, 4, len(y))
    weighted = exact(alpha=0.01).fit(X, y, sample_weight=sw)
    repeated = exact(alpha=0.01).fit(np.repeat(X, sw, axis=0), np.repeat(y, sw))
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, atol=1e-7)
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-8)


def test_equal_weights_change_nothing():
    X, y = problem(3)
    a = exact(alpha=0.01).fit(X, y)
    b = exact(alpha=0.01).fit(X, y, sample_weight=np.full(len(y), 2.5))
    np.testing.assert_array_equal(a.coef_, b.coef_)


# (the fit on the wrong labels may need more than 100 L-BFGS iterations: it warns, as it should)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_zero_weight_examples_are_ignored(digits, solver):
    X_tr, X_te, y_tr, y_te = digits
    rng = np.random.default_rng(0)
    noisy = rng.random(len(y_tr)) < 0.4
    y_bad = np.where(noisy, (y_tr + 1) % 10, y_tr)  # 40% of the labels wrong, the same way
    sw = (~noisy).astype(float)
    weighted = SoftmaxRegression(solver=solver, random_state=0).fit(X_tr, y_bad, sample_weight=sw)
    clean = SoftmaxRegression(solver=solver, random_state=0).fit(X_tr[~noisy], y_tr[~noisy])
    scrambled = SoftmaxRegression(solver=solver, random_state=0).fit(X_tr, y_bad)
    acc = weighted.score(X_te, y_te)
    assert abs(acc - clean.score(X_te, y_te)) <= 0.02
    assert acc > scrambled.score(X_te, y_te) + 0.02


def test_sgd_sample_weight_minimises_the_weighted_objective(digits):
    X_tr, X_te, y_tr, _ = digits
    sw = np.random.default_rng(3).uniform(0, 2, len(y_tr)) * (1 + 4 * (y_tr == 3))
    exact_fit = exact(alpha=1e-3).fit(X_tr, y_tr, sample_weight=sw)
    sgd = SoftmaxRegression(solver="sgd", alpha=1e-3, max_iter=30, random_state=0).fit(
        X_tr, y_tr, sample_weight=sw)
    assert (sgd.predict(X_te) == exact_fit.predict(X_te)).mean() > 0.95
    # the weight on class 3 shows: more predictions of 3 than without it
    plain = SoftmaxRegression(solver="sgd", alpha=1e-3, max_iter=30, random_state=0).fit(
        X_tr, y_tr)
    assert (sgd.predict(X_te) == 3).sum() >= (plain.predict(X_te) == 3).sum()


def test_bad_sample_weights_are_value_errors():
    X, y = problem(3)
    with pytest.raises(ValueError, match="Negative values"):
        SoftmaxRegression().fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="non-zero"):
        SoftmaxRegression().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match=r"at least 2 classes, .* only class \[1\]"):
        SoftmaxRegression().fit(X, y, sample_weight=(y == 1).astype(float))
    with pytest.raises(ValueError, match=r"sample_weight.shape"):
        SoftmaxRegression().fit(X, y, sample_weight=np.ones(len(y) + 1))


# ---------------------------------------------------------------- class_weight


@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 2: 0.5}])
@pytest.mark.parametrize("with_sample_weight", [False, True])
def test_class_weight_matches_logistic_regression(class_weight, with_sample_weight):
    X, y = make_classification(n_samples=300, n_features=5, n_informative=3, n_redundant=0,
                               n_classes=3, weights=[0.6, 0.3, 0.1], random_state=0)
    sw = np.random.default_rng(4).uniform(0.5, 2, len(y)) if with_sample_weight else None
    alpha = 0.01
    ours = exact(alpha=alpha, class_weight=class_weight).fit(X, y, sample_weight=sw)
    # LogisticRegression's C applies to the sum of sample weight times class weight
    per_class = compute_class_weight(class_weight, classes=np.unique(y), y=y, sample_weight=sw)
    total = ((np.ones(len(y)) if sw is None else sw) * per_class[y]).sum()
    ref = reference(1 / (alpha * total), class_weight=class_weight).fit(X, y, sample_weight=sw)
    assert_same_model(ours, ref, X)


def test_class_weight_is_the_same_as_that_sample_weight():
    X, y = problem(3)
    cw = {0: 2.0, 1: 0.25, 2: 1.0}
    a = exact(alpha=0.01, class_weight=cw).fit(X, y)
    b = exact(alpha=0.01).fit(X, y, sample_weight=np.vectorize(cw.get)(y))
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-9)


def test_balanced_weights_raise_the_recall_of_a_rare_class():
    X, y = make_classification(n_samples=2000, n_features=5, n_informative=2, n_redundant=0,
                               n_classes=2, weights=[0.95, 0.05], class_sep=0.5, random_state=0)
    for solver in ("lbfgs", "sgd"):
        plain = SoftmaxRegression(solver=solver, random_state=0).fit(X, y)
        balanced = SoftmaxRegression(solver=solver, class_weight="balanced",
                                     random_state=0).fit(X, y)
        recall = [(m.predict(X[y == 1]) == 1).mean() for m in (plain, balanced)]
        assert recall[1] > recall[0] + 0.1, (solver, recall)


def test_unknown_class_in_class_weight_is_a_value_error():
    X, y = problem(3)
    with pytest.raises(ValueError, match="class_weight"):
        SoftmaxRegression(class_weight={5: 2.0}).fit(X, y)


# ---------------------------------------------------------------- warm_start


def test_lbfgs_warm_start_continues_from_the_previous_fit(digits):
    X_tr, _, y_tr, _ = digits
    cold = SoftmaxRegression(alpha=1e-2, max_iter=500).fit(X_tr, y_tr)
    clf = SoftmaxRegression(alpha=1e-2, max_iter=500, warm_start=True).fit(X_tr, y_tr)
    assert clf.n_iter_ == cold.n_iter_  # the first fit starts from zero
    clf.fit(X_tr, y_tr)
    assert clf.n_iter_ <= 1  # already at the minimum
    np.testing.assert_allclose(clf.coef_, cold.coef_, atol=1e-4)
    clf.set_params(warm_start=False).fit(X_tr, y_tr)
    assert clf.n_iter_ == cold.n_iter_


def test_sgd_warm_start_starts_from_the_previous_weights(digits):
    X_tr, _, y_tr, _ = digits
    first = SoftmaxRegression(solver="sgd", random_state=0).fit(X_tr, y_tr)
    clf = SoftmaxRegression(solver="sgd", random_state=0).fit(X_tr, y_tr)
    clf.set_params(warm_start=True, lr=1e-9, max_iter=1).fit(X_tr, y_tr)  # a step of ~0
    np.testing.assert_allclose(clf.coef_, first.coef_, atol=1e-4)
    clf.set_params(warm_start=False).fit(X_tr, y_tr)  # from zero: barely moved
    assert np.abs(clf.coef_).max() < 1e-4


def test_warm_start_with_other_classes_or_features_is_a_value_error(digits):
    X_tr, _, y_tr, _ = digits
    clf = SoftmaxRegression(warm_start=True).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="warm_start=True continues the previous fit"):
        clf.fit(X_tr[y_tr < 5], y_tr[y_tr < 5])
    with pytest.raises(ValueError, match="warm_start=True continues the previous fit"):
        clf.fit(X_tr[:, :10], y_tr)


# ---------------------------------------------------------------- early stopping


def replay_early_stopping(scores: list[float], tol: float, patience: int) -> int:
    """The epoch SGDClassifier's rule stops at, given each epoch's validation score."""
    best, stale = None, 0
    for epoch, score in enumerate(scores, start=1):
        stale = stale + 1 if best is not None and score < best + tol else 0
        best = score if best is None or score > best else best
        if stale >= patience:
            return epoch
    return len(scores)


@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_early_stopping_stops_when_validation_accuracy_stalls(digits, fraction):
    X_tr, _, y_tr, _ = digits
    clf = SoftmaxRegression(early_stopping=True, validation_fraction=fraction,
                            n_iter_no_change=3, max_iter=200, lr=0.3, random_state=7)
    clf.fit(X_tr, y_tr)
    assert clf.solver_ == "sgd"  # (auto: early stopping is sgd's)
    scores = clf.validation_scores_
    assert 3 < clf.n_iter_ < 200 and len(scores) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.n_iter_ == replay_early_stopping(scores, clf.tol, 3)
    assert clf.best_validation_score_ == max(scores)
    # the validation set is SGDClassifier's stratified split; the kept weights are the best's
    _, val = next(StratifiedShuffleSplit(test_size=fraction, random_state=7).split(X_tr, y_tr))
    assert len(val) == int(np.ceil(fraction * len(y_tr)))
    assert clf.score(X_tr[val], y_tr[val]) == pytest.approx(max(scores), abs=1.01 / len(val))
    assert all(abs(s * len(val) - round(s * len(val))) < 1e-6 for s in scores)


def test_without_early_stopping_all_epochs_run_and_no_scores(digits):
    X_tr, _, y_tr, _ = digits
    clf = SoftmaxRegression(solver="sgd", max_iter=7, random_state=0).fit(X_tr, y_tr)
    assert clf.n_iter_ == 7 and clf.validation_scores_ is None
    assert clf.best_validation_score_ is None


def test_lbfgs_ignores_early_stopping(digits):
    X_tr, _, y_tr, _ = digits
    a = SoftmaxRegression(solver="lbfgs", early_stopping=True).fit(X_tr, y_tr)
    b = SoftmaxRegression(solver="lbfgs").fit(X_tr, y_tr)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert not hasattr(a, "validation_scores_") and not hasattr(a, "loss_curve_")


def test_early_stopping_with_too_few_examples_per_class_says_so():
    X, y = problem(3, n=12)
    with pytest.raises(ValueError, match="early_stopping needs a validation set with every class"):
        SoftmaxRegression(early_stopping=True, validation_fraction=0.1).fit(X, y)


# ---------------------------------------------------------------- verbose


def test_verbose_logs_one_line_per_epoch_or_evaluation(digits, caplog):
    X_tr, _, y_tr, _ = digits
    with caplog.at_level(logging.INFO, logger="softmaxlab.estimator"):
        clf = SoftmaxRegression(solver="sgd", verbose=1, max_iter=4, random_state=0).fit(
            X_tr, y_tr)
    lines = [r.getMessage() for r in caplog.records if r.name == "softmaxlab.estimator"]
    assert [line.split(":")[0] for line in lines] == [f"SGD epoch {e}/4" for e in range(1, 5)]
    assert f"training loss {clf.loss_curve_[-1]:.5f}" in lines[-1]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="softmaxlab.estimator"):
        clf = SoftmaxRegression(solver="lbfgs", verbose=1).fit(X_tr, y_tr)
    lines = [r.getMessage() for r in caplog.records if r.name == "softmaxlab.estimator"]
    assert lines[0].startswith("L-BFGS evaluation 1: objective ")
    assert lines[-1].startswith(f"L-BFGS: {clf.n_iter_} iterations")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="softmaxlab.estimator"):
        SoftmaxRegression(verbose=0).fit(X_tr, y_tr)
    assert not [r for r in caplog.records if r.name == "softmaxlab.estimator"]


def test_verbose_shows_on_stderr_without_logging_set_up():
    src = Path(softmaxlab.__file__).resolve().parents[1]
    code = textwrap.dedent("""
        from sklearn.datasets import load_iris
        from softmaxlab import SoftmaxRegression
        X, y = load_iris(return_X_y=True)
        SoftmaxRegression(solver="sgd", verbose=1, max_iter=2, random_state=0).fit(X, y)
        SoftmaxRegression(solver="sgd", verbose=0, max_iter=2, random_state=0).fit(X, y)
        print("done")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "done\n"
    lines = out.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["SGD epoch 1/2", "SGD epoch 2/2"]


# ---------------------------------------------------------------- partial_fit's options


def test_partial_fit_takes_sample_weight_and_class_weight_dicts(digits):
    X_tr, X_te, y_tr, y_te = digits
    classes = np.unique(y_tr)
    rng = np.random.default_rng(0)
    noisy = rng.random(len(y_tr)) < 0.4
    y_bad = np.where(noisy, (y_tr + 1) % 10, y_tr)
    weighted = SoftmaxRegression(random_state=0)
    plain = SoftmaxRegression(random_state=0)
    for _ in range(10):
        weighted.partial_fit(X_tr, y_bad, classes=classes, sample_weight=(~noisy).astype(float))
        plain.partial_fit(X_tr, y_bad, classes=classes)
    assert weighted.score(X_te, y_te) > plain.score(X_te, y_te) + 0.02
    cw = SoftmaxRegression(class_weight={3: 20.0}, random_state=0)
    for _ in range(3):
        cw.partial_fit(X_tr, y_tr, classes=classes)
    assert (cw.predict(X_te) == 3).sum() > (plain.predict(X_te) == 3).sum()


def test_partial_fit_refuses_balanced_class_weights(digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(ValueError, match="compute_class_weight"):
        SoftmaxRegression(class_weight="balanced").partial_fit(X_tr, y_tr,
                                                               classes=np.unique(y_tr))


def test_partial_fit_reads_uint8_images_as_x_over_255():
    X, y = problem(3)
    U = np.clip((X - X.min()) * 30, 0, 255).astype(np.uint8)
    a = SoftmaxRegression(random_state=0).partial_fit(U, y, classes=[0, 1, 2])
    b = SoftmaxRegression(random_state=0).partial_fit(U / 255.0, y, classes=[0, 1, 2])
    # the same steps on the same values: coef_ applies to the uint8 values themselves
    np.testing.assert_allclose(a.coef_ * 255, b.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.decision_function(U), b.decision_function(U / 255.0), atol=1e-4)


# ---------------------------------------------------------------- predict_log_proba


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_predict_log_proba_is_the_log_of_predict_proba(digits, solver):
    X_tr, X_te, y_tr, _ = digits
    clf = SoftmaxRegression(solver=solver, random_state=0).fit(X_tr, y_tr)
    log_p = clf.predict_log_proba(X_te)
    p = clf.predict_proba(X_te)
    np.testing.assert_allclose(np.exp(log_p), p, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(clf.classes_[log_p.argmax(1)], clf.predict(X_te))
