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


def _assert_same(a, b, rtol):
    assert a[0] == b[0], (a, b)
    if a[0] == "raises":
        assert a[1:] == b[1:]
        return
    x, y = a[1], b[1]
    if isinstance(x, tuple):
        for u, v in zip(x, y, strict=True):
            assert_allclose(u, v, rtol=rtol, atol=1e-12)
    elif np.asarray(x).dtype.kind in "fc":
        assert_allclose(x, y, rtol=rtol, atol=1e-12)
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
