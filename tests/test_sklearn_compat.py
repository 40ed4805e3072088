"""scikit-learn's own estimator checks, on several settings of each estimator."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastbp import MLPClassifier, MLPRegressor

# Each solver and both backends; the checks themselves also feed float32.
# Only dropout's sample-weight equivalence checks are expected to fail.
# (early_stopping is left out: on the checks' 10-sample datasets its
# validation split is too small, for scikit-learn's MLP too; test_mlp.py
# covers it.)
ESTIMATORS = [
    MLPClassifier(hidden_layer_sizes=(32,), max_iter=100),
    MLPClassifier(hidden_layer_sizes=(32, 8), solver="sgd", learning_rate_init=0.05,
                  max_iter=100),
    MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=100),
    MLPRegressor(hidden_layer_sizes=(32,), max_iter=200),
    MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=100),
    MLPRegressor(hidden_layer_sizes=(32,), solver="sgd", activation="tanh",
                 max_iter=100, backend="numpy"),
    MLPClassifier(hidden_layer_sizes=(8,), solver="newton", max_iter=50),
    # Newton converges tightly; alpha=1 gives the sample-weight equivalence
    # checks one optimum (with a tiny alpha the 15-sample fit interpolates and
    # rounding steers weighted and repeated data to different flat minima).
    MLPRegressor(hidden_layer_sizes=(8,), solver="newton", max_iter=200, tol=1e-9,
                 alpha=1.0),
    # fastbp's extras switched on: per-layer activations, dropout, L1 (the
    # checks also cover transform). class_weight has its own tests: the
    # checks' labels are unknown in advance and they call partial_fit, which
    # refuses 'balanced'.
    MLPClassifier(hidden_layer_sizes=(32, 16), activation=["gelu", "silu"],
                  dropout=0.1, l1=1e-4, max_iter=100),
    MLPRegressor(hidden_layer_sizes=(32,), activation="elu", dropout=[0.1],
                 l1=1e-4, restore_best_weights=True, max_iter=200),
    MLPClassifier(hidden_layer_sizes=(16, 8), batch_norm=True, max_iter=100),
    MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", batch_norm=True,
                 max_iter=100),
]


_DROPOUT_REASON = (
    "dropout masks follow sample positions: a repeated sample draws its own "
    "mask, so a weight of 2 is not a repetition"
)


_BATCH_NORM_REASON = (
    "batch statistics are unweighted (weights act in the loss only): a "
    "weight of 2 does not count a sample twice in the mean and variance"
)


def _expected_failures(estimator):
    params = estimator.get_params()
    reason = (_DROPOUT_REASON if params.get("dropout", 0)
              else _BATCH_NORM_REASON if params.get("batch_norm") else None)
    if reason is None:
        return {}
    return {f"check_sample_weight_equivalence_on_{kind}_data": reason
            for kind in ("dense", "sparse")}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failures)
def test_sklearn_compatible_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_float32_estimator_checks_dtype(cls):
    # The checks above feed float64; float32 must stay float32 end to end.
    rng = np.random.RandomState(0)
    X = rng.randn(30, 4).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = cls(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y)
    assert est.predict(X).dtype == (np.int64 if cls is MLPClassifier else np.float32)
    assert all(c.dtype == np.float32 for c in est.coefs_)
