"""Shared fixtures: dtypes, seeds, small data makers, tolerances."""

import numpy as np
import pytest

RTOL = {np.float32: 1e-4, np.float64: 1e-10}


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(params=[0, 1, 2])
def seed(request):
    return request.param


def make_classification_data(n_samples=60, n_features=5, n_classes=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n_samples, n_features)
    y = rng.randint(n_classes, size=n_samples)
    X[np.arange(n_samples), y % n_features] += 2.0  # learnable signal
    return X, y


def make_regression_data(n_samples=60, n_features=5, n_targets=1, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n_samples, n_features)
    W = rng.randn(n_features, n_targets)
    y = np.tanh(X @ W) + 0.1 * rng.randn(n_samples, n_targets)
    return X, (y.ravel() if n_targets == 1 else y)


# A failing callback, for the loggers' tests (a fit that fails mid-way must
# close what the logger opened).
class FailAfter:
    """A callback raising at the end of its second epoch."""

    def __init__(self):
        self.ended = 0

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        self.ended += 1
        if self.ended == 2:
            raise RuntimeError("callback failed")
