"""The solvers beyond scikit-learn's, trained end to end by the estimators."""

import warnings

import numpy as np
import pytest
from conftest import make_classification_data, make_regression_data
from sklearn.exceptions import ConvergenceWarning

from fastbp import MLPClassifier, MLPRegressor, _optimizers
from fastbp._families import SOLVER

# fastbp's own stochastic solvers, from the table.
NEW_SOLVERS = [name for name in SOLVER if name not in ("sgd", "adam")]
# A learning rate each rule trains the small problems with.
LR = {"adagrad": 0.05, "rmsprop": 0.005, "adadelta": 1.0, "adamw": 0.01,
      "adamax": 0.01, "nadam": 0.01, "adam": 0.01, "sgd": 0.05}
ADADELTA_EPS = 1e-6  # PyTorch's; from zero state, 1e-8 starts too slowly


def _fit(cls, X, y, **params):
    params = {"hidden_layer_sizes": (8,), "random_state": 0, "max_iter": 15,
              "batch_size": 16, **params}
    params.setdefault("learning_rate_init", LR[params.get("solver", "adam")])
    if params.get("solver") == "adadelta":
        params.setdefault("epsilon", ADADELTA_EPS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(**params).fit(X, y)


def _assert_same_weights(a, b, rtol=0.0):
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        if rtol:
            np.testing.assert_allclose(p, q, rtol=rtol, atol=1e-12)
        else:
            np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("solver", NEW_SOLVERS)
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_new_solvers_decrease_the_loss(cls, solver):
    X, y = (make_classification_data if cls is MLPClassifier
            else make_regression_data)(n_samples=80)
    model = _fit(cls, X, y, solver=solver)
    curve = model.loss_curve_
    assert len(curve) == model.n_iter_ == 15
    assert curve[-1] < 0.9 * curve[0]
    output = model.predict(X) if cls is MLPRegressor else model.predict_proba(X)
    assert np.isfinite(output).all()
    assert model.score(X, y) > (0.5 if cls is MLPClassifier else 0.3)


@pytest.mark.parametrize("solver", NEW_SOLVERS)
def test_new_solvers_numpy_backend_equals_cython(solver):
    X, y = make_classification_data(n_samples=70)
    models = [_fit(MLPClassifier, X, y, solver=solver, hidden_layer_sizes=(6, 4),
                   max_iter=5, batch_size=13, backend=b, rho=0.8,
                   weight_decay=0.3) for b in ("cython", "numpy")]
    _assert_same_weights(*models, rtol=1e-9)
    np.testing.assert_allclose(models[0].loss_curve_, models[1].loss_curve_,
                               rtol=1e-9)


@pytest.mark.parametrize("solver", NEW_SOLVERS)
def test_new_solvers_train_in_float32(solver):
    X, y = make_regression_data(n_samples=60)
    X32 = X.astype(np.float32)
    models = [_fit(MLPRegressor, X_, y, solver=solver, max_iter=4)
              for X_ in (X32, X)]
    assert models[0].coefs_[0].dtype == np.float32
    assert models[0]._optimizer["state"].dtype == np.float32
    _assert_same_weights(*models, rtol=2e-3)


@pytest.mark.parametrize("solver", NEW_SOLVERS + ["sgd", "adam"])
def test_partial_fit_continues_the_optimizer_state(solver):
    # Two partial_fit calls are the two epochs of one fit (no shuffling), so
    # moments, accumulators and step counts must carry over between calls.
    X, y = make_classification_data(n_samples=48)
    params = {"solver": solver, "hidden_layer_sizes": (5,), "random_state": 0,
              "batch_size": 10, "shuffle": False, "learning_rate_init": LR[solver],
              "epsilon": ADADELTA_EPS if solver == "adadelta" else 1e-8}
    fitted = _fit(MLPClassifier, X, y, max_iter=2, **params)
    partial = MLPClassifier(**params)
    partial.partial_fit(X, y, classes=[0, 1, 2])
    partial.partial_fit(X, y)
    _assert_same_weights(fitted, partial)
    np.testing.assert_array_equal(fitted._optimizer["state"],
                                  partial._optimizer["state"])
    assert fitted._optimizer["step"] == partial._optimizer["step"]
    # A fresh state for the second call would have gone elsewhere.
    restarted = MLPClassifier(**params)
    restarted.partial_fit(X, y, classes=[0, 1, 2])
    del restarted._optimizer
    restarted.partial_fit(X, y)
    assert not np.allclose(restarted.coefs_[0], partial.coefs_[0])


@pytest.mark.parametrize("solver", NEW_SOLVERS)
def test_warm_start_restarts_the_optimizer_like_sklearn(solver):
    # scikit-learn builds a new optimizer on each fit, warm or not; only the
    # weights carry over.
    X, y = make_regression_data(n_samples=40)
    model = _fit(MLPRegressor, X, y, solver=solver, warm_start=True, max_iter=2,
                 batch_size=20)
    first = [c.copy() for c in model.coefs_]
    model.fit(X, y)
    n_steps = 2 * 2 if solver in _optimizers.COUNTS_STEPS else 0
    assert model._optimizer["step"] == n_steps
    assert len(model.loss_curve_) == 4
    assert not np.allclose(first[0], model.coefs_[0])


def test_switching_solver_between_partial_fits_starts_a_new_state():
    X, y = make_classification_data(n_samples=30)
    model = MLPClassifier((4,), solver="adam", random_state=0)
    model.partial_fit(X, y, classes=[0, 1, 2])
    n_params = sum(c.size for c in model.coefs_ + model.intercepts_)
    for solver in NEW_SOLVERS:
        model.set_params(solver=solver).partial_fit(X, y)
        state = model._optimizer["state"]
        assert state.size == _optimizers.STATE_ARRAYS[solver] * n_params


def test_weight_decay_only_acts_on_adamw():
    X, y = make_classification_data(n_samples=50)
    for solver in ["adam", "rmsprop", "sgd", "nadam"]:
        a = _fit(MLPClassifier, X, y, solver=solver, weight_decay=0.0)
        b = _fit(MLPClassifier, X, y, solver=solver, weight_decay=0.7)
        _assert_same_weights(a, b)
    adam = _fit(MLPClassifier, X, y, solver="adam", learning_rate_init=0.01)
    adamw0 = _fit(MLPClassifier, X, y, solver="adamw", weight_decay=0.0)
    _assert_same_weights(adam, adamw0)  # AdamW without decay is Adam
    adamw = _fit(MLPClassifier, X, y, solver="adamw", weight_decay=5.0)
    norm = [sum(np.sum(c**2) for c in m.coefs_) for m in (adamw0, adamw)]
    assert norm[1] < norm[0]  # the decay shrinks the weights


def test_rho_only_acts_on_rmsprop_and_adadelta():
    X, y = make_classification_data(n_samples=50)
    for solver in ["adam", "adagrad", "adamw"]:
        a = _fit(MLPClassifier, X, y, solver=solver, rho=0.5)
        b = _fit(MLPClassifier, X, y, solver=solver, rho=0.95)
        _assert_same_weights(a, b)
    for solver in ["rmsprop", "adadelta"]:
        a = _fit(MLPClassifier, X, y, solver=solver, rho=0.5)
        b = _fit(MLPClassifier, X, y, solver=solver, rho=0.95)
        assert not np.allclose(a.coefs_[0], b.coefs_[0])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"solver": "adabelief"}, "'solver' parameter"),
        ({"rho": 1.0}, "'rho' parameter"),
        ({"rho": -0.1}, "'rho' parameter"),
        ({"weight_decay": -1e-3}, "'weight_decay' parameter"),
        ({"weight_decay": "0.1"}, "'weight_decay' parameter"),
    ],
)
def test_invalid_solver_parameters_raise(params, match):
    X, y = make_classification_data(n_samples=30)
    for cls in (MLPClassifier, MLPRegressor):
        with pytest.raises(ValueError, match=match):
            cls(**params).fit(X, y if cls is MLPClassifier else y * 1.0)


def test_new_solvers_are_stochastic():
    for solver in NEW_SOLVERS:
        assert hasattr(MLPRegressor(solver=solver), "partial_fit")


# Property-based: any stochastic solver with any schedule and clipping trains
# to finite weights with one recorded rate per epoch, or fails cleanly.
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


def _halve(epoch, lr):
    return lr / 2


@st.composite
def _toolbox_settings(draw):
    params = {
        "solver": draw(st.sampled_from(sorted(_optimizers.SOLVERS))),
        "learning_rate": draw(st.sampled_from(
            ["constant", "invscaling", "adaptive", "step", "exponential", "cosine",
             _halve])),
        "learning_rate_init": draw(st.sampled_from([1e-3, 0.05, 1.0])),
        "warmup_epochs": draw(st.integers(0, 3)),
        "lr_step_size": draw(st.integers(1, 3)),
        "lr_cycle": draw(st.sampled_from([None, 1, 2])),
        "lr_cycle_mult": draw(st.integers(1, 2)),
        "clip_norm": draw(st.sampled_from([None, 1e-3, 1.0])),
        "clip_value": draw(st.sampled_from([None, 1e-3, 0.5])),
        "rho": draw(st.sampled_from([0.0, 0.5, 0.99])),
        "weight_decay": draw(st.sampled_from([0.0, 0.01, 10.0])),
        "batch_size": draw(st.sampled_from([1, 7, 200])),
        "max_iter": draw(st.integers(1, 6)),
        "n_iter_no_change": 2,
    }
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return params, dtype


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(_toolbox_settings())
def test_property_any_solver_schedule_and_clipping(settings):
    params, dtype = settings
    X, y = make_classification_data(n_samples=30)
    model = MLPClassifier((5,), random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(X.astype(dtype), y)
        except ValueError as e:
            assert "diverged" in str(e)
            return
    assert all(np.isfinite(a).all() for a in model.coefs_ + model.intercepts_)
    assert model.coefs_[0].dtype == dtype
    rates = model.learning_rate_curve_
    assert len(rates) == len(model.loss_curve_) == model.n_iter_
    assert all(np.isfinite(r) and r > 0 for r in rates)
    assert model._optimizer["state"].dtype == dtype
