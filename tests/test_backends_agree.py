"""Every public method gives the same answer on the compiled engine and on
its NumPy twin (backend="numpy"), for the same fitted weights.

The twin is the oracle of the compiled code, so the comparison must reach
every method, not only training: ``METHODS`` says how to call each one, and
``test_every_public_method_is_compared`` fails when an estimator gains a
public method that is neither there nor in ``NOT_COMPUTED`` (a method that
runs no pass of the network), so a method added later cannot slip through.
"""

import copy
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning

from fastbp import MLPClassifier, MLPRegressor

# Methods that run no forward or backward pass: what they return does not
# depend on the backend (parameters, metadata routing, names, reshaping).
NOT_COMPUTED = {
    "get_params", "set_params", "get_metadata_routing", "set_fit_request",
    "set_partial_fit_request", "set_score_request", "set_output",
    "set_callbacks", "get_feature_names_out", "unflatten_params",
}


def _rng_vector(est, seed=3):
    n = sum(c.size for c in est.coefs_) + sum(b.size for b in est.intercepts_)
    return np.random.default_rng(seed).standard_normal(n)


# name -> call(estimator, X, y, sample_weight) on a fitted estimator.
METHODS = {
    "predict": lambda e, X, y, w: e.predict(X),
    "predict_proba": lambda e, X, y, w: e.predict_proba(X),
    "predict_log_proba": lambda e, X, y, w: e.predict_log_proba(X),
    "score": lambda e, X, y, w: e.score(X, y, sample_weight=w),
    "transform": lambda e, X, y, w: e.transform(X),
    "loss_gradient": lambda e, X, y, w: e.loss_gradient(X, y, sample_weight=w),
    "hessian_vector_product": lambda e, X, y, w: e.hessian_vector_product(
        X, y, _rng_vector(e), sample_weight=w),
    "hessian": lambda e, X, y, w: e.hessian(X, y, sample_weight=w),
    "jacobian": lambda e, X, y, w: e.jacobian(X),
}
# Methods that train: compared by what they leave fitted, from the same start.
TRAINING = {
    "fit": lambda e, X, y, w: e.fit(X, y, sample_weight=w),
    "partial_fit": lambda e, X, y, w: e.partial_fit(
        X, y, sample_weight=w,
        **({"classes": np.unique(y)} if hasattr(e, "predict_proba") else {})),
    "fit_transform": lambda e, X, y, w: e.fit_transform(X, y),
}

CONFIGS = {
    "relu": dict(hidden_layer_sizes=(6,)),
    "per_layer": dict(hidden_layer_sizes=(5, 4), activation=["tanh", "logistic"]),
    "gelu_softplus": dict(hidden_layer_sizes=(5, 3), activation=["gelu", "softplus"],
                          l1=1e-3),
    "batch_norm": dict(hidden_layer_sizes=(5, 4), batch_norm=True),
    "dropout": dict(hidden_layer_sizes=(6, 4), dropout=0.2),
}


def _data(kind):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    w = rng.uniform(0.5, 2.0, 40)
    if kind == "binary":
        y = (X[:, 0] + X[:, 1] > 0).astype(int)
    elif kind == "multiclass":
        y = np.digitize(X[:, 0], [-0.5, 0.5])
    else:
        y = X[:, :2] @ [1.0, -2.0] + 0.1 * rng.standard_normal(40)
    return X, y, w


def _estimator(kind, config, backend):
    cls = MLPRegressor if kind == "regression" else MLPClassifier
    return cls(**CONFIGS[config], max_iter=4, random_state=0, backend=backend)


def _outcome(call, *args):
    """('ok', value) or ('raises', type, message): both backends must agree
    on refusals too (the second-order tools refuse batch norm)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return ("ok", call(*args))
    except (ValueError, TypeError, AttributeError) as e:
        return ("raises", type(e), str(e))


def _assert_same(a, b, rtol, atol=1e-12):
    assert a[0] == b[0], (a, b)
    if a[0] == "raises":
        assert a[1:] == b[1:]
        return
    x, y = a[1], b[1]
    if isinstance(x, tuple):
        for u, v in zip(x, y, strict=True):
            assert_allclose(u, v, rtol=rtol, atol=atol)
    elif np.asarray(x).dtype.kind in "fc":
        assert_allclose(x, y, rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(x, y)


def _public_methods(cls):
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_every_public_method_is_compared(cls):
    public = _public_methods(cls)
    unknown = public - set(METHODS) - set(TRAINING) - NOT_COMPUTED
    assert not unknown, (
        f"{sorted(unknown)}: add each to METHODS or TRAINING (compared on both "
        "backends) or, if it runs no pass of the network, to NOT_COMPUTED")


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_agrees_with_the_twin(kind, config, method):
    X, y, w = _data(kind)
    fitted = _outcome(_estimator(kind, config, "cython").fit, X, y)[1]
    if not hasattr(fitted, method):
        pytest.skip(f"{type(fitted).__name__} has no {method}")
    twin = copy.deepcopy(fitted)  # the same weights, checked on load
    twin.set_params(backend="numpy")
    call = METHODS[method]
    _assert_same(_outcome(call, fitted, X, y, w), _outcome(call, twin, X, y, w),
                 rtol=1e-10)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("method", sorted(TRAINING))
def test_training_agrees_with_the_twin(kind, config, method):
    X, y, w = _data(kind)
    results = []
    for backend in ("cython", "numpy"):
        est = _estimator(kind, config, backend)
        out = _outcome(TRAINING[method], est, X, y, w)
        results.append(out if out[0] == "raises" else
                       ("ok", tuple(est.coefs_ + est.intercepts_)
                        + ((out[1],) if method == "fit_transform" else ())))
    _assert_same(*results, rtol=1e-9)


# The regression losses beyond squared error: every loss x solver family
# (momentum SGD, an adaptive rule, lbfgs, newton where the loss has
# curvature) x dtype, with sample weights, one and two outputs.
LOSS_PARAMS = {"absolute_error": {}, "huber": {"huber_delta": 0.5},
               "quantile": {"quantile": 0.7}, "poisson": {}, "gamma": {}}


def _loss_data(loss, n_outputs, dtype):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 5))
    w = rng.uniform(0.5, 2.0, 40)
    score = X[:, :n_outputs] * 0.5 + 0.3 * rng.standard_normal((40, n_outputs))
    if loss == "gamma":
        y = rng.gamma(2.0, np.exp(score) / 2)
    elif loss == "poisson":
        y = rng.poisson(np.exp(score)).astype(float)
    else:
        y = score
    y = y.ravel() if n_outputs == 1 else y
    return X.astype(dtype), y, w


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize("solver", ["sgd", "rmsprop", "lbfgs", "newton"])
@pytest.mark.parametrize("loss", sorted(LOSS_PARAMS))
def test_regression_losses_train_alike_on_both_backends(loss, solver, n_outputs,
                                                        dtype):
    X, y, w = _loss_data(loss, n_outputs, dtype)
    results = []
    for backend in ("cython", "numpy"):
        est = MLPRegressor(loss, hidden_layer_sizes=(6,), activation="tanh",
                           solver=solver, max_iter=4, random_state=0,
                           learning_rate_init=0.01, backend=backend,
                           **LOSS_PARAMS[loss])
        out = _outcome(est.fit, X, y, w)
        if out[0] == "ok":
            out = ("ok", tuple(est.coefs_ + est.intercepts_)
                   + (np.asarray([est.loss_]),)
                   + (est.predict(X), est.loss_gradient(X, y, w)[1]))
        results.append(out)
    if solver == "newton" and loss in ("absolute_error", "quantile"):
        assert results[0][0] == "raises"  # no curvature: refused
    else:
        assert results[0][0] == "ok", results[0]
    f64 = dtype == np.float64
    _assert_same(*results, rtol=1e-9 if f64 else 2e-4, atol=1e-12 if f64 else 1e-6)


@pytest.mark.parametrize("metric", ["loss", "score"])
@pytest.mark.parametrize("loss", ["absolute_error", "huber", "quantile", "gamma"])
def test_regression_losses_sparse_l1_early_stopping_partial_fit_agree(loss, metric):
    import scipy.sparse as sp

    X, y, w = _loss_data(loss, 2, np.float64)
    X = sp.csr_matrix(np.where(np.abs(X) > 0.5, X, 0))
    curves = []
    for backend in ("cython", "numpy"):
        est = MLPRegressor(loss, hidden_layer_sizes=(6,), solver="adam", l1=1e-3,
                           alpha=1e-2, max_iter=6, early_stopping=True,
                           early_stopping_metric=metric, validation_fraction=0.25,
                           n_iter_no_change=2, random_state=0, backend=backend,
                           **LOSS_PARAMS[loss])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y, sample_weight=w)
        inc = MLPRegressor(loss, hidden_layer_sizes=(6,), solver="sgd",
                           random_state=0, backend=backend, **LOSS_PARAMS[loss])
        for _ in range(3):
            inc.partial_fit(X, y, sample_weight=w)
        curves.append((est.loss_curve_, est.validation_loss_curve_,
                       est.validation_scores_, *est.coefs_, inc.loss_curve_,
                       *inc.coefs_))
        assert np.all(np.isfinite(est.validation_loss_curve_))
    for a, b in zip(*curves, strict=True):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)
