"""MLPRegressor's losses beyond squared error (issue 23): absolute_error,
huber (huber_delta), quantile (quantile), gamma. Their parameter rules,
what they report, and what each is for, measured on held-out data.

The kernel values and gradients are checked against sklearn._loss in
test_kernels.py, the derivatives against central differences in
test_second_order.py, the two backends against each other in
test_backends_agree.py, ONNX in test_onnx.py and test_skl2onnx.py, saved
state in test_saved_state.py.
"""

import functools
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_gamma_deviance, mean_squared_error, r2_score
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import ThreadpoolController

from fastbp import MLPRegressor

NEW_LOSSES = {"absolute_error": {}, "huber": {"huber_delta": 0.5},
              "quantile": {"quantile": 0.7}, "gamma": {}}
# Cosine annealing to 0: the subgradient noise of the piecewise-linear
# losses dies out at the end of training.
ANNEALED = dict(hidden_layer_sizes=(32,), learning_rate_init=0.01,
                learning_rate="cosine", max_iter=60, n_iter_no_change=1000,
                random_state=0)


def _fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


def _small(loss, seed=0, n=60, n_outputs=1):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 3)
    y = X[:, :n_outputs] + 0.3 * rng.randn(n, n_outputs)
    if loss == "gamma":
        y = np.exp(y)
    return X, (y.ravel() if n_outputs == 1 else y)


# ---------------------------------------------------------------------------
# parameters


def test_quantile_loss_needs_its_quantile():
    X, y = _small("quantile")
    with pytest.raises(ValueError, match="loss='quantile' needs the quantile"):
        MLPRegressor("quantile").fit(X, y)


@pytest.mark.parametrize("bad", [0, 0.0, 1.0, 1.5, -0.1, "0.5", True, np.nan])
def test_quantile_out_of_range_is_refused(bad):
    X, y = _small("quantile")
    with pytest.raises(InvalidParameterError, match=r"'quantile' parameter.*\(0.0, 1.0\)"):
        MLPRegressor("quantile", quantile=bad).fit(X, y)


@pytest.mark.parametrize("bad", [0.0, -1.0, "1", np.nan])
def test_huber_delta_must_be_positive(bad):
    X, y = _small("huber")
    with pytest.raises(InvalidParameterError, match="'huber_delta' parameter"):
        MLPRegressor("huber", huber_delta=bad).fit(X, y)


@pytest.mark.parametrize("loss", ["squared_error", "absolute_error", "huber",
                                  "poisson", "gamma"])
def test_quantile_with_another_loss_is_an_error(loss):
    X, y = _small("gamma")
    with pytest.raises(ValueError, match="quantile=0.5 is a parameter of "
                       f"loss='quantile' only, but loss='{loss}'"):
        MLPRegressor(loss, quantile=0.5).fit(X, y)


@pytest.mark.parametrize("loss", ["squared_error", "absolute_error", "quantile",
                                  "poisson", "gamma"])
def test_huber_delta_with_another_loss_is_an_error(loss):
    X, y = _small("gamma")
    with pytest.raises(ValueError, match="huber_delta=2.0 is a parameter of "
                       f"loss='huber' only, but loss='{loss}'"):
        MLPRegressor(loss, huber_delta=2.0, quantile=0.5).fit(X, y)


def test_unknown_loss_lists_every_loss():
    X, y = _small("huber")
    with pytest.raises(InvalidParameterError, match="'absolute_error', 'gamma', "
                       "'huber', 'poisson', 'quantile', 'squared_error'"):
        MLPRegressor("pinball").fit(X, y)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_gamma_needs_positive_targets(bad):
    X, y = _small("gamma")
    y[3] = bad
    with pytest.raises(ValueError, match="not positive.*loss='gamma'.*y must be > 0"):
        MLPRegressor("gamma").fit(X, y)
    with pytest.raises(ValueError, match="not positive"):
        _fit(MLPRegressor("gamma", max_iter=2), X, np.abs(y) + 1).partial_fit(X, y)


@pytest.mark.parametrize("loss, bad, match", [("gamma", 0.0, "y_val are not positive"),
                                              ("poisson", -1.0, "y_val are negative")])
def test_validation_targets_outside_the_loss_domain_raise(loss, bad, match):
    X, y = _small("gamma")
    y_val = y[:10].copy()
    y_val[2] = bad
    with pytest.raises(ValueError, match=match):
        MLPRegressor(loss, early_stopping=True).fit(X, y, X_val=X[:10], y_val=y_val)


def test_parameter_errors_leave_a_fitted_model_unchanged():
    X, y = _small("huber")
    est = _fit(MLPRegressor("huber", hidden_layer_sizes=(4,), max_iter=3), X, y)
    coefs = [c.copy() for c in est.coefs_]
    est.set_params(quantile=0.3)
    with pytest.raises(ValueError, match="quantile=0.3 is a parameter"):
        est.fit(X, y)
    for a, b in zip(coefs, est.coefs_, strict=True):
        assert_allclose(a, b, rtol=0)


def test_huber_delta_default_is_one():
    X, y = _small("huber", n=80)
    y = 3 * y  # residuals on both sides of 1
    default = _fit(MLPRegressor("huber", hidden_layer_sizes=(4,), max_iter=5,
                                random_state=0), X, y)
    one = _fit(MLPRegressor("huber", huber_delta=1.0, hidden_layer_sizes=(4,),
                            max_iter=5, random_state=0), X, y)
    other = _fit(MLPRegressor("huber", huber_delta=0.3, hidden_layer_sizes=(4,),
                              max_iter=5, random_state=0), X, y)
    assert default.loss_curve_ == one.loss_curve_
    assert default.loss_curve_ != other.loss_curve_


# ---------------------------------------------------------------------------
# what a fit reports


@pytest.mark.parametrize("loss", sorted(NEW_LOSSES))
def test_output_activation_and_positive_gamma_predictions(loss):
    X, y = _small(loss)
    est = _fit(MLPRegressor(loss, hidden_layer_sizes=(4,), max_iter=5,
                            **NEW_LOSSES[loss]), X, y)
    assert est.out_activation_ == ("exp" if loss == "gamma" else "identity")
    if loss == "gamma":
        assert np.all(est.predict(10 * X) > 0)


def _sklearn_loss(loss, params, y, p):
    """The loss per sample, from sklearn._loss (tests only)."""
    from sklearn._loss.loss import (
        AbsoluteError, HalfGammaLoss, HuberLoss, PinballLoss,
    )

    y, p = (np.ascontiguousarray(a, dtype=float) for a in (y, p))
    if loss == "gamma":
        ref = HalfGammaLoss()
        return ref.loss(y, np.log(p)) + ref.constant_to_optimal_zero(y)
    if loss == "absolute_error":
        ref = AbsoluteError()
    elif loss == "huber":
        ref = HuberLoss(delta=params.get("huber_delta", 1.0))
    else:
        ref = PinballLoss(quantile=params["quantile"])
    return ref.loss(y, p)


@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize("loss", sorted(NEW_LOSSES))
def test_loss_is_the_chosen_loss_and_score_stays_r2(loss, n_outputs):
    # lbfgs's loss_ is the objective at its final weights: the weighted
    # mean over samples of the loss summed over outputs (scikit-learn's
    # formula per element), plus alpha / 2 ||W||^2 / sum(w).
    X, y = _small(loss, n=50, n_outputs=n_outputs)
    w = np.random.RandomState(3).uniform(0.5, 2, len(X))
    params = NEW_LOSSES[loss]
    est = _fit(MLPRegressor(loss, hidden_layer_sizes=(5,), solver="lbfgs",
                            max_iter=20, alpha=0.1, random_state=0, **params),
               X, y, sample_weight=w)
    pred = est.predict(X).reshape(len(X), -1)
    Y = y.reshape(len(X), -1)
    per_sample = sum(_sklearn_loss(loss, params, Y[:, k], pred[:, k])
                     for k in range(n_outputs))
    penalty = 0.5 * 0.1 * sum((c ** 2).sum() for c in est.coefs_) / w.sum()
    want = np.average(per_sample, weights=w) + penalty
    assert_allclose(est.loss_, want, rtol=1e-9)
    assert_allclose(est.loss_gradient(X, y, sample_weight=w)[0], want, rtol=1e-9)
    assert_allclose(est.score(X, y, sample_weight=w),
                    r2_score(y, est.predict(X), sample_weight=w), rtol=1e-12)


@pytest.mark.parametrize("loss", sorted(NEW_LOSSES))
def test_stochastic_loss_curve_reports_the_chosen_loss(loss):
    # One full-batch sgd epoch with learning_rate_init tiny: the epoch's
    # loss is the loss at the starting weights, which a second model
    # reports through loss_gradient.
    X, y = _small(loss, n=40)
    params = NEW_LOSSES[loss]
    est = MLPRegressor(loss, hidden_layer_sizes=(5,), solver="sgd", alpha=0.0,
                       batch_size=40, max_iter=1, learning_rate_init=1e-12,
                       momentum=0.0, random_state=0, **params)
    _fit(est, X, y)
    pred = est.predict(X)
    assert_allclose(est.loss_curve_[0], _sklearn_loss(loss, params, y, pred).mean(),
                    rtol=1e-6)


# ---------------------------------------------------------------------------
# behaviour on held-out data


def _heteroscedastic(n, seed):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, (n, 2))
    sigma = 0.2 + 0.5 * np.abs(X[:, 0])
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + sigma * rng.randn(n)


@functools.cache
def _quantile_net(quantile):
    """The quantile network on _heteroscedastic(20000, 0), fitted once for the
    module: the coverage test and the interval test read the same 5% and 95%
    models (only their predictions)."""
    X, y = _heteroscedastic(20000, 0)
    return _fit(MLPRegressor("quantile", quantile=quantile, batch_size=200,
                             **{**ANNEALED, "hidden_layer_sizes": (32, 32)}), X, y)


@pytest.mark.parametrize("quantile", [0.05, 0.5, 0.95])
def test_quantile_models_cover_their_quantile_on_held_out_data(quantile):
    X_test, y_test = _heteroscedastic(20000, 1)
    est = _quantile_net(quantile)
    below = y_test <= est.predict(X_test)
    assert abs(below.mean() - quantile) <= 0.03
    # conditionally too: where the noise is small and where it is large
    calm = np.abs(X_test[:, 0]) < 0.5
    rough = np.abs(X_test[:, 0]) > 1.5
    assert abs(below[calm].mean() - quantile) <= 0.03
    assert abs(below[rough].mean() - quantile) <= 0.03


def test_quantile_interval_is_as_good_as_hist_gradient_boostings():
    X, y = _heteroscedastic(20000, 0)
    X_test, y_test = _heteroscedastic(20000, 1)

    def coverage(lo, hi):
        lo, hi = lo.predict(X_test), hi.predict(X_test)
        return np.mean((y_test >= lo) & (y_test <= hi)), np.mean(hi - lo)

    mlp = [_quantile_net(q) for q in (0.05, 0.95)]
    # One thread for scikit-learn's OpenMP runtime (libgomp; fastbp's own
    # pool, which threadpoolctl also counts as "openmp", is left as it is):
    # the same trees, but 2 threads per xdist worker on 2 cores oversubscribe
    # them, and OpenMP's spinning barriers then made these two fits take
    # 4-17 s instead of under 1 s (predicting too).
    with ThreadpoolController().select(internal_api="openmp").limit(limits=1):
        hgb = [HistGradientBoostingRegressor(loss="quantile", quantile=q,
                                             random_state=0).fit(X, y)
               for q in (0.05, 0.95)]
        theirs = coverage(*hgb)
    ours = coverage(*mlp)
    assert abs(ours[0] - 0.9) <= 0.03
    assert abs(theirs[0] - 0.9) <= 0.03  # the reference itself
    assert ours[1] <= 1.1 * theirs[1]  # an interval no wider


def test_absolute_error_centres_the_median_where_squared_error_centres_the_mean():
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, (4000, 3))
    # skewed noise: mean 0, median log 2 - 1 = -0.31
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + rng.exponential(1.0, 4000) - 1.0
    absolute = _fit(MLPRegressor("absolute_error", **ANNEALED), X, y)
    squared = _fit(MLPRegressor("squared_error", **ANNEALED), X, y)
    r_abs, r_sq = y - absolute.predict(X), y - squared.predict(X)
    assert abs(np.median(r_abs)) < 0.05
    assert abs(r_sq.mean()) < 0.05
    # and not the other way round
    assert np.median(r_sq) < -0.2 and r_abs.mean() > 0.2


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_robust_losses_beat_squared_error_with_gross_outliers(loss):
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, (4000, 3))
    X_test = rng.uniform(-2, 2, (4000, 3))

    def f(X):
        return np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]

    y = f(X) + 0.1 * rng.randn(4000)
    bad = rng.rand(4000) < 0.05
    y[bad] += rng.choice([-1, 1], bad.sum()) * rng.uniform(10, 30, bad.sum())
    params = {"huber_delta": 0.5} if loss == "huber" else {}
    robust = _fit(MLPRegressor(loss, **params, **ANNEALED), X, y)
    squared = _fit(MLPRegressor("squared_error", **ANNEALED), X, y)
    mse_robust = mean_squared_error(f(X_test), robust.predict(X_test))
    mse_squared = mean_squared_error(f(X_test), squared.predict(X_test))
    assert mse_robust < 0.1 * mse_squared
    assert mse_robust < 0.01


def test_gamma_beats_squared_error_in_gamma_deviance_on_gamma_targets():
    rng = np.random.RandomState(0)

    def draw(n):
        X = rng.uniform(-2, 2, (n, 3))
        mu = np.exp(0.5 * np.sin(2 * X[:, 0]) + 0.3 * X[:, 1])
        return X, mu, rng.gamma(2.0, mu / 2)

    X, _, y = draw(4000)
    X_test, mu_test, y_test = draw(20000)
    gamma = _fit(MLPRegressor("gamma", **ANNEALED), X, y)
    squared = _fit(MLPRegressor("squared_error", **ANNEALED), X, y)
    p_gamma, p_squared = gamma.predict(X_test), squared.predict(X_test)
    assert p_squared.min() > 0  # the deviance is defined for both
    # on the noisy targets (mostly the gamma noise's own deviance)
    assert mean_gamma_deviance(y_test, p_gamma) < mean_gamma_deviance(y_test,
                                                                      p_squared)
    # against the true means, by far
    assert (mean_gamma_deviance(mu_test, p_gamma)
            < 0.5 * mean_gamma_deviance(mu_test, p_squared))


@pytest.mark.parametrize("fitted, new", [("squared_error", "poisson"),
                                         ("huber", "gamma"),
                                         ("gamma", "absolute_error")])
def test_changing_the_loss_across_output_families_refuses_to_continue(fitted, new):
    """A warm fit, partial_fit or loss_gradient after set_params(loss=...)
    to a loss of another output (identity <-> exp) raises and keeps the
    model; within a family it continues; predict never reads the loss."""
    X, y = _small("gamma")  # positive targets: in every loss's domain
    est = MLPRegressor(loss=fitted, hidden_layer_sizes=(4,), max_iter=3,
                       random_state=0)
    _fit(est, X, y)
    before = est.predict(X)
    est.set_params(loss=new, warm_start=True)
    for call in (lambda: est.fit(X, y), lambda: est.partial_fit(X, y),
                 lambda: est.loss_gradient(X, y)):
        with pytest.raises(ValueError, match=f"out_activation_='{est.out_activation_}'"
                           f", and loss='{new}' needs"):
            call()
    np.testing.assert_array_equal(est.predict(X), before)
    same = {"identity": "huber", "exp": "poisson"}[est.out_activation_]
    est.set_params(loss=same)
    _fit(est, X, y)
    assert est.out_activation_ in ("identity", "exp") and est.n_iter_ == 3
