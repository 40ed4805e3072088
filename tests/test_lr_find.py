"""lr_find, the learning-rate range test: its steps replayed by hand with
partial_fit, its settings checked, and its suggestion trained with."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import train_test_split

from fastbp import LRFinder, MLPClassifier, MLPRegressor, lr_find
from fastbp._params import STOCHASTIC_SOLVERS

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, random_state=0, stratify=y)


def _replay(estimator, X, y, rates, sample_weight=None, classes=None):
    """The range test's steps done by hand: without shuffling, its minibatches
    are the rows in order, pass after pass; each step is a partial_fit with
    a constant rate, the step's (partial_fit reads learning_rate_init at each
    call and keeps the optimizer's state between calls)."""
    est = clone(estimator).set_params(learning_rate="constant")
    n, batch = X.shape[0], 50
    losses = []
    for step, rate in enumerate(rates):
        start = step * batch % n
        rows = slice(start, min(start + batch, n))
        sw = None if sample_weight is None else sample_weight[rows]
        extra = {} if classes is None or step else {"classes": classes}
        est.set_params(learning_rate_init=rate)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.partial_fit(X[rows], y[rows], sample_weight=sw, **extra)
        losses.append(est.loss_curve_[-1])
    return est, np.array(losses)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_steps_are_partial_fits_at_growing_rates(digits, solver, weighted):
    X, _, y, _ = digits
    X, y = X[:200], y[:200]  # 4 minibatches of 50 a pass
    sw = np.random.default_rng(0).uniform(0.2, 3, len(y)) if weighted else None
    clf = MLPClassifier((16,), solver=solver, batch_size=50, shuffle=False,
                        random_state=0)
    params = clf.get_params()
    result = lr_find(clf, X, y, sample_weight=sw, min_lr=1e-4, max_lr=1.0,
                     num_steps=30, diverge_threshold=None)
    assert isinstance(result, LRFinder)
    assert clf.get_params() == params and not hasattr(clf, "coefs_")  # unchanged
    rates = np.geomspace(1e-4, 1.0, 30)
    np.testing.assert_allclose(result.learning_rates_, rates, rtol=1e-12)
    # The rate of each step is the one the clone's solver used.
    np.testing.assert_allclose(result.estimator_.learning_rate_curve_, rates,
                               rtol=1e-12)
    est, losses = _replay(clf, X, y, result.learning_rates_, sw, np.arange(10))
    np.testing.assert_allclose(result.raw_losses_, losses, rtol=1e-10)
    np.testing.assert_allclose(result.estimator_.coefs_[0], est.coefs_[0],
                               rtol=1e-8, atol=1e-12)
    # Smoothed: an exponential moving average with bias correction.
    avg = np.cumsum(0.02 * losses * 0.98 ** -np.arange(30)) * 0.98 ** np.arange(30)
    np.testing.assert_allclose(result.losses_, avg / (1 - 0.98 ** np.arange(1, 31)),
                               rtol=1e-10)
    if weighted:  # the weights reach the loss
        unweighted = lr_find(clf, X, y, min_lr=1e-4, max_lr=1.0, num_steps=30,
                             diverge_threshold=None)
        assert not np.allclose(unweighted.raw_losses_, result.raw_losses_)


@pytest.mark.parametrize("solver", STOCHASTIC_SOLVERS)
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_every_stochastic_solver_and_both_estimators(digits, solver, Estimator):
    X, _, y, _ = digits
    if Estimator is MLPRegressor:
        X, y = make_regression(300, 10, noise=1.0, random_state=0)
        y = y / y.std()
    est = Estimator(hidden_layer_sizes=(8,), solver=solver, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = lr_find(est, X, y, num_steps=40)
    # No suggestion only with a warning saying why.
    assert (result.suggestion_ is None) == any(
        "too early to suggest" in str(w.message) for w in caught)
    n = len(result.learning_rates_)
    assert 2 <= n <= 40 and result.losses_.shape == result.raw_losses_.shape == (n,)
    assert np.all(np.diff(result.learning_rates_) > 0)
    assert np.isfinite(result.losses_).all()
    if result.suggestion_ is not None:
        assert result.suggestion_ in result.learning_rates_[10:]
        at = list(result.learning_rates_).index(result.suggestion_)
        assert at <= np.argmin(result.losses_)  # on the way down


@pytest.mark.parametrize("smoothing", [0.0, 0.98])
def test_stops_when_the_loss_diverges(digits, smoothing):
    X, _, y, _ = digits
    X, y = X[:200], y[:200]
    clf = MLPClassifier((16,), solver="sgd", batch_size=50, shuffle=False,
                        random_state=0)
    result = lr_find(clf, X, y, min_lr=1e-3, max_lr=1e6, num_steps=200,
                     smoothing=smoothing)
    n = len(result.learning_rates_)
    assert result.diverged_ and n < 200
    # The smoothed loss crossed the threshold at the last step, only there.
    assert result.losses_[-1] > 4 * result.losses_.min()
    assert np.all(result.losses_[1:-1] <= 4 * np.minimum.accumulate(
        result.losses_)[:-2])


def test_stops_when_the_solver_diverges(digits):
    """Without a threshold, the solver's divergence error ends the test: the
    step after the last one recorded gives non-finite weights."""
    X, _, y, _ = digits
    X, y = X[:200], y[:200]
    clf = MLPClassifier((16,), solver="sgd", batch_size=50, shuffle=False,
                        random_state=0)
    result = lr_find(clf, X, y, min_lr=1e-3, max_lr=1e12, num_steps=100,
                     diverge_threshold=None)
    n = len(result.learning_rates_)
    assert result.diverged_ and n < 100 and np.isfinite(result.raw_losses_).all()
    rates = np.geomspace(1e-3, 1e12, 100)
    _replay(clf, X, y, rates[:n], classes=np.arange(10))  # these steps are fine
    with pytest.raises(ValueError, match="diverged"):
        _replay(clf, X, y, rates[:n + 1], classes=np.arange(10))


@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
def test_full_batch_solvers_are_refused(digits, solver):
    X, _, y, _ = digits
    with pytest.raises(ValueError, match=f"stochastic solver; solver='{solver}'"):
        lr_find(MLPClassifier(solver=solver), X, y)


@pytest.mark.parametrize("kwargs, match", [
    ({"min_lr": 1.0, "max_lr": 0.1}, "0 < min_lr < max_lr"),
    ({"min_lr": 0.0}, "0 < min_lr < max_lr"),
    ({"num_steps": 1}, "num_steps"),
    ({"smoothing": 1.0}, "smoothing"),
    ({"diverge_threshold": 0.5}, "diverge_threshold"),
])
def test_bad_settings(digits, kwargs, match):
    X, _, y, _ = digits
    with pytest.raises(ValueError, match=match):
        lr_find(MLPClassifier(), X, y, **kwargs)


def test_too_short_for_a_suggestion_warns(digits):
    X, _, y, _ = digits
    with pytest.warns(UserWarning, match="too early to suggest"):
        result = lr_find(MLPClassifier((8,), random_state=0), X, y, num_steps=8)
    assert result.suggestion_ is None


def test_callbacks_of_the_estimator_are_not_called(digits):
    X, _, y, _ = digits

    class Count:
        calls = 0

        def setup(self, estimator, context):
            Count.calls += 1

        def teardown(self, estimator, context):
            pass

        def on_fit_task_begin(self, estimator, context):
            pass

        def on_fit_task_end(self, estimator, context):
            pass

    clf = MLPClassifier((8,), random_state=0).set_callbacks(Count())
    lr_find(clf, X, y, num_steps=30)
    assert Count.calls == 0 and clf._skl_callbacks


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_the_suggestion_trains_at_least_as_well_as_the_default(digits, solver):
    """On digits, a fit at the suggested rate scores at least as well on held
    out data as one at the default rate, in the same number of epochs."""
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(solver=solver, max_iter=10, random_state=0)
    result = lr_find(clf, X_train, y_train)
    assert result.suggestion_ != clf.learning_rate_init
    default = clone(clf).fit(X_train, y_train).score(X_test, y_test)
    suggested = clone(clf).set_params(learning_rate_init=result.suggestion_)
    assert suggested.fit(X_train, y_train).score(X_test, y_test) >= default


def test_balanced_class_weight_is_the_weights_of_all_of_y(digits):
    """partial_fit refuses "balanced"; lr_find uses the weights a fit on all
    of y would: the same steps as those weights given as a dict."""
    X, _, y, _ = digits
    X, y = X[:300], y[:300]
    keep = (y < 3) | (np.arange(300) % 3 == 0)  # unbalanced classes
    X, y = X[keep], y[keep]
    counts = np.bincount(y)
    as_dict = {c: len(y) / (10 * counts[c]) for c in range(10)}
    kwargs = dict(min_lr=1e-4, max_lr=1.0, num_steps=20)
    balanced = lr_find(MLPClassifier((8,), class_weight="balanced", random_state=0),
                       X, y, **kwargs)
    explicit = lr_find(MLPClassifier((8,), class_weight=as_dict, random_state=0),
                       X, y, **kwargs)
    unweighted = lr_find(MLPClassifier((8,), random_state=0), X, y, **kwargs)
    np.testing.assert_allclose(balanced.raw_losses_, explicit.raw_losses_, rtol=1e-12)
    assert not np.allclose(balanced.raw_losses_, unweighted.raw_losses_)


def test_divergence_at_the_first_step(digits):
    """A first rate so large the first step diverges: no steps, no suggestion."""
    X, _, y, _ = digits
    reg = MLPRegressor(hidden_layer_sizes=(16,), solver="sgd", random_state=0)
    with pytest.warns(UserWarning, match="at step 0 of 0"):
        result = lr_find(reg, X, y * 1e6, min_lr=1e305, max_lr=1e307, num_steps=10)
    assert result.diverged_ and len(result.learning_rates_) == 0
    assert result.suggestion_ is None and result.losses_.shape == (0,)
