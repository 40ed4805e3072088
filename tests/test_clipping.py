"""Gradient clipping through the estimators (kernel: test_optimizers, test_epoch)."""

import warnings

import numpy as np
import pytest
from conftest import make_classification_data, make_regression_data
from sklearn.exceptions import ConvergenceWarning

from fastbp import MLPClassifier, MLPRegressor
from fastbp._network import glorot_init, pack


def _fit(cls=MLPRegressor, **params):
    X, y = (make_regression_data if cls is MLPRegressor
            else make_classification_data)(n_samples=40)
    params = {"hidden_layer_sizes": (6,), "random_state": 0, "max_iter": 4,
              "batch_size": 8, "learning_rate_init": 0.05, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(**params).fit(X, y)


def _flat(model):
    return pack(model.coefs_, model.intercepts_, model.coefs_[0].dtype)


def _one_gradient_step(**clip):
    """Initial and final flat weights of one full-batch plain gradient step."""
    X, y = make_regression_data(n_samples=40)
    init = glorot_init([X.shape[1], 6, 1], "relu", np.random.RandomState(0),
                       np.float64)
    model = _fit(solver="sgd", momentum=0.0, batch_size=40, shuffle=False,
                 max_iter=1, alpha=0.0, **clip)
    return init, _flat(model)


def test_clip_norm_bounds_the_step_by_hand():
    lr = 0.05
    init, free = _one_gradient_step()
    g = (init - free) / lr  # the unclipped full-batch gradient
    assert np.linalg.norm(g) > 0.2
    init, clipped = _one_gradient_step(clip_norm=0.2)
    # sgd without momentum moves by -lr * g * 0.2 / ||g||
    np.testing.assert_allclose(init - clipped, lr * g * 0.2 / np.linalg.norm(g),
                               rtol=1e-10, atol=1e-15)


def test_clip_value_bounds_each_entry_by_hand():
    lr = 0.05
    init, free = _one_gradient_step()
    g = (init - free) / lr
    assert np.abs(g).max() > 0.05 and np.abs(g).min() < 0.05
    init, clipped = _one_gradient_step(clip_value=0.05)
    np.testing.assert_allclose(init - clipped, lr * np.clip(g, -0.05, 0.05),
                               rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("solver", ["sgd", "adam", "rmsprop", "adamw"])
@pytest.mark.parametrize(
    "clip", [{"clip_norm": 0.3}, {"clip_value": 0.02},
             {"clip_norm": 0.3, "clip_value": 0.05}],
    ids=["norm", "value", "both"],
)
def test_clipping_numpy_backend_equals_cython(solver, clip):
    models = [_fit(MLPClassifier, solver=solver, backend=b, **clip)
              for b in ("cython", "numpy")]
    for a, b in zip(models[0].coefs_ + models[0].intercepts_,
                    models[1].coefs_ + models[1].intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    unclipped = _fit(MLPClassifier, solver=solver)
    assert not np.allclose(models[0].coefs_[0], unclipped.coefs_[0])


def test_loose_clipping_changes_nothing():
    free = _fit(solver="adam")
    loose = _fit(solver="adam", clip_norm=1e9, clip_value=1e9)
    for a, b in zip(free.coefs_, loose.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_clipping_tames_a_diverging_fit():
    X, y = make_regression_data(n_samples=40)
    y = 1e3 * y  # huge gradients at the start
    params = {"solver": "sgd", "learning_rate_init": 0.01, "max_iter": 30,
              "hidden_layer_sizes": (6,), "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(ValueError, match="diverged"):
            MLPRegressor(**params).fit(X, y)
        model = MLPRegressor(clip_norm=1.0, **params).fit(X, y)
    assert np.isfinite(model.loss_curve_).all()
    assert model.loss_curve_[-1] < model.loss_curve_[0]


@pytest.mark.parametrize(
    "params, match",
    [
        ({"clip_norm": 0.0}, "'clip_norm' parameter"),
        ({"clip_norm": -1.0}, "'clip_norm' parameter"),
        ({"clip_norm": "1"}, "'clip_norm' parameter"),
        ({"clip_value": 0}, "'clip_value' parameter"),
        ({"clip_value": float("nan")}, "'clip_value' parameter"),
    ],
)
def test_invalid_clipping_parameters_raise(params, match):
    for cls in (MLPClassifier, MLPRegressor):
        with pytest.raises(ValueError, match=match):
            _fit(cls, **params)
