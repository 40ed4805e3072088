"""Learning-rate schedules: formulas by hand, and the rates fits record."""

import math
import warnings

import numpy as np
import pytest
from conftest import make_classification_data, make_regression_data
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning

from fastbp import MLPClassifier, MLPRegressor, _schedules

LR0 = 0.01


def _fit(max_iter=8, cls=MLPRegressor, **params):
    X, y = make_regression_data(n_samples=40)
    if cls is MLPClassifier:
        X, y = make_classification_data(n_samples=40)
    params = {"hidden_layer_sizes": (4,), "random_state": 0, "max_iter": max_iter,
              "batch_size": 10, "learning_rate_init": LR0, "solver": "sgd",
              "tol": 0.0, "n_iter_no_change": 1000, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(**params).fit(X, y)


# ----------------------------------------------------------------------
# the formulas, by hand


def test_step_decay_by_hand():
    got = [_schedules.step_decay(1.0, k, 3, 0.5) for k in range(8)]
    assert got == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_exponential_decay_by_hand():
    got = [_schedules.exponential_decay(2.0, k, 2, 0.25) for k in range(5)]
    assert_allclose(got, [2, 1, 0.5, 0.25, 0.125])  # 0.25 ** (1/2) = 0.5 per epoch


def test_cosine_annealing_by_hand():
    # period 4: cos(0), cos(pi/4), cos(pi/2), cos(3pi/4), cos(pi), then held
    half = math.sqrt(2) / 2
    want = [1, (1 + half) / 2, 0.5, (1 - half) / 2, 0, 0]
    got = [_schedules.cosine_annealing(1.0, k, 0.0, 4) for k in range(6)]
    assert_allclose(got, want, atol=1e-15)
    # lr_min = 0.2 shifts and scales: 0.2 + 0.8 * (1 + cos) / 2
    assert _schedules.cosine_annealing(1.0, 2, 0.2, 4) == pytest.approx(0.6)


def test_cosine_warm_restarts_by_hand():
    # cycles of 2, then 4, then 8 epochs (mult 2): restarts at k = 2 and 6
    got = [_schedules.cosine_annealing(1.0, k, 0.0, 2, 2, restarts=True)
           for k in range(8)]
    want = [1, 0.5, 1, (1 + math.sqrt(2) / 2) / 2, 0.5, (1 - math.sqrt(2) / 2) / 2,
            1, (1 + math.cos(math.pi / 8)) / 2]
    assert_allclose(got, want, atol=1e-15)
    # mult 1: the same cycle of 3 over and over
    got = [_schedules.cosine_annealing(1.0, k, 0.0, 3, 1, restarts=True)
           for k in range(7)]
    assert_allclose(got, [1, 0.75, 0.25] * 2 + [1], atol=1e-15)


def test_warmup_and_inverse_scaling_by_hand():
    assert [_schedules.warmup(1.0, e, 3) for e in range(3)] == [0.25, 0.5, 0.75]
    assert _schedules.inverse_scaling(0.3, 8, 0.5) == pytest.approx(0.1)


# ----------------------------------------------------------------------
# what fits record


@pytest.mark.parametrize("solver", ["sgd", "rmsprop", "adamw", "adam"])
def test_step_schedule_for_every_solver(solver):
    model = _fit(solver=solver, learning_rate="step", lr_step_size=3, lr_gamma=0.5)
    want = [LR0] * 3 + [LR0 / 2] * 3 + [LR0 / 4] * 2
    assert_allclose(model.learning_rate_curve_, want, rtol=1e-15)
    assert len(model.learning_rate_curve_) == len(model.loss_curve_)


def test_exponential_schedule_records_its_formula():
    model = _fit(solver="nadam", learning_rate="exponential", lr_step_size=4,
                 lr_gamma=0.1)
    assert_allclose(model.learning_rate_curve_,
                    [LR0 * 0.1 ** (k / 4) for k in range(8)], rtol=1e-14)


def test_cosine_schedule_anneals_over_max_iter():
    model = _fit(max_iter=10, learning_rate="cosine", lr_min=1e-3)
    want = [1e-3 + (LR0 - 1e-3) * (1 + math.cos(math.pi * k / 10)) / 2
            for k in range(10)]
    assert_allclose(model.learning_rate_curve_, want, rtol=1e-14)


def test_cosine_warm_restarts_and_warmup_combine():
    # 2 warm-up epochs, then cycles of 3 and 6 epochs
    model = _fit(max_iter=11, solver="adagrad", learning_rate="cosine",
                 lr_cycle=3, lr_cycle_mult=2, warmup_epochs=2)
    cosine = [(1 + math.cos(math.pi * i / 3)) / 2 for i in range(3)]
    cosine += [(1 + math.cos(math.pi * i / 6)) / 2 for i in range(6)]
    want = [LR0 / 3, 2 * LR0 / 3] + [LR0 * c for c in cosine]
    assert_allclose(model.learning_rate_curve_, want, rtol=1e-14)


def test_warmup_then_constant():
    model = _fit(max_iter=6, solver="adam", warmup_epochs=4)
    want = [LR0 * (e + 1) / 5 for e in range(4)] + [LR0, LR0]
    assert_allclose(model.learning_rate_curve_, want, rtol=1e-15)


@pytest.mark.parametrize("solver", ["sgd", "rmsprop"])
def test_invscaling_counts_samples(solver):
    # 40 samples per epoch: t = 40 e before epoch e
    model = _fit(solver=solver, learning_rate="invscaling", power_t=0.5)
    want = [LR0] + [LR0 / math.sqrt(40 * e + 1) for e in range(1, 8)]
    assert_allclose(model.learning_rate_curve_, want, rtol=1e-14)


@pytest.mark.parametrize("learning_rate", ["invscaling", "adaptive"])
def test_adam_ignores_sklearn_schedules_like_sklearn(learning_rate):
    model = _fit(solver="adam", learning_rate=learning_rate)
    assert model.learning_rate_curve_ == [LR0] * 8


@pytest.mark.parametrize("solver", ["sgd", "rmsprop", "nadam"])
def test_adaptive_cuts_by_five_on_plateaus(solver):
    # tol larger than any improvement: every epoch after the first fails, so
    # after n_iter_no_change + 1 = 3 failures the rate is cut and counting
    # restarts: cuts before epochs 4 and 7 (0-based).
    model = _fit(max_iter=10, solver=solver, learning_rate="adaptive", tol=100.0,
                 n_iter_no_change=2)
    want = [LR0] * 4 + [LR0 / 5] * 3 + [LR0 / 25] * 3
    assert_allclose(model.learning_rate_curve_, want, rtol=1e-15)


def test_adam_adaptive_stops_instead():
    model = _fit(max_iter=10, solver="adam", learning_rate="adaptive", tol=100.0,
                 n_iter_no_change=2)
    assert model.n_iter_ == 4 and model.learning_rate_curve_ == [LR0] * 4


def test_callable_schedule_gets_epoch_and_previous_rate():
    calls = []

    def halve_every_other(epoch, lr):
        calls.append((epoch, lr))
        return lr / 2 if epoch % 2 else lr

    model = _fit(max_iter=5, solver="rmsprop", learning_rate=halve_every_other,
                 warmup_epochs=1)
    # epoch 0 is warm-up (LR0 / 2), the callable sees epochs 1..4
    assert calls == [(1, LR0 / 2), (2, LR0 / 4), (3, LR0 / 4), (4, LR0 / 8)]
    assert model.learning_rate_curve_ == [LR0 / 2, LR0 / 4, LR0 / 4, LR0 / 8,
                                          LR0 / 8]


def test_partial_fit_continues_the_epoch_count_and_warm_start_restarts_it():
    X, y = make_regression_data(n_samples=30)
    seen = []

    def record(epoch, lr):
        seen.append(epoch)
        return 0.5 ** epoch * LR0

    model = MLPRegressor(hidden_layer_sizes=(3,), solver="sgd", learning_rate=record,
                         learning_rate_init=LR0, random_state=0)
    for _ in range(3):
        model.partial_fit(X, y)
    assert seen == [0, 1, 2]
    assert_allclose(model.learning_rate_curve_, [LR0, LR0 / 2, LR0 / 4])
    seen.clear()
    model.set_params(warm_start=True, max_iter=2, tol=0, n_iter_no_change=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert seen == [0, 1]  # a new fit builds a new optimizer (scikit-learn's)
    assert_allclose(model.learning_rate_curve_, [LR0, LR0 / 2, LR0 / 4, LR0,
                                                 LR0 / 2])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "0.1",
                                 None, True])
def test_callable_returning_a_bad_rate_raises_and_keeps_the_model(bad):
    model = _fit(max_iter=2)
    coef = model.coefs_[0].copy()
    model.set_params(learning_rate=lambda epoch, lr: bad, warm_start=True)
    with pytest.raises(ValueError, match="learning_rate callable returned"):
        model.fit(*make_regression_data(n_samples=40))
    np.testing.assert_array_equal(model.coefs_[0], coef)
    assert len(model.learning_rate_curve_) == 2


def test_lbfgs_records_no_learning_rates():
    model = _fit(solver="lbfgs", max_iter=3)
    assert not hasattr(model, "learning_rate_curve_")


def test_learning_rate_display_draws_the_curve():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastbp.plotting import LearningRateDisplay

    model = _fit(learning_rate="step", lr_step_size=2, lr_gamma=0.5, max_iter=4)
    disp = LearningRateDisplay.from_estimator(model)
    np.testing.assert_array_equal(disp.lines_["learning rate"].get_ydata(),
                                  model.learning_rate_curve_)
    plt.close("all")


@pytest.mark.parametrize(
    "params, match",
    [
        ({"learning_rate": "cyclic"}, "'learning_rate' parameter"),
        ({"learning_rate": 0.1}, "'learning_rate' parameter"),
        ({"lr_step_size": 0}, "'lr_step_size' parameter"),
        ({"lr_step_size": 2.5}, "'lr_step_size' parameter"),
        ({"lr_gamma": 0.0}, "'lr_gamma' parameter"),
        ({"lr_gamma": 1.5}, "'lr_gamma' parameter"),
        ({"lr_min": -1e-3}, "'lr_min' parameter"),
        ({"lr_cycle": 0}, "'lr_cycle' parameter"),
        ({"lr_cycle_mult": 0}, "'lr_cycle_mult' parameter"),
        ({"lr_cycle_mult": 1.5}, "'lr_cycle_mult' parameter"),
        ({"warmup_epochs": -1}, "'warmup_epochs' parameter"),
        ({"warmup_epochs": None}, "'warmup_epochs' parameter"),
    ],
)
def test_invalid_schedule_parameters_raise(params, match):
    for cls in (MLPClassifier, MLPRegressor):
        with pytest.raises(ValueError, match=match):
            _fit(cls=cls, **params)
