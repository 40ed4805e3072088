"""Model files: pickle, joblib and skops round-trips, and the version record."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification

import fastbp
from fastbp import FastbpVersionWarning, MLPClassifier, MLPRegressor

X, y = make_classification(120, 6, n_informative=4, n_classes=3, random_state=0)

ESTIMATORS = {
    "adam+early_stopping": lambda: MLPClassifier(
        (5,), max_iter=15, early_stopping=True, random_state=0),
    "sgd": lambda: MLPClassifier((4, 3), solver="sgd", max_iter=10, random_state=0),
    "lbfgs": lambda: MLPClassifier((5,), solver="lbfgs", max_iter=10, random_state=0),
    "regressor": lambda: MLPRegressor(hidden_layer_sizes=(5,), max_iter=10,
                                      random_state=0),
}


def _fitted(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: short fits
        return ESTIMATORS[name]().fit(X, y)


def _check_same(loaded, est):
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    for a, b in zip(loaded.coefs_ + loaded.intercepts_,
                    est.coefs_ + est.intercepts_):
        np.testing.assert_array_equal(a, b)
    # The loaded weights are views into one flat buffer again.
    assert all(c.base is loaded._fitted_model().flat for c in loaded.coefs_)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_pickle_and_joblib_round_trips(name):
    est = _fitted(name)
    _check_same(pickle.loads(pickle.dumps(est)), est)
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    _check_same(joblib.load(buf), est)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_skops_trusts_only_fastbp_types(name):
    sio = pytest.importorskip("skops.io")
    est = _fitted(name)
    data = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted == [f"fastbp._mlp.{type(est).__name__}"]
    loaded = sio.loads(data, trusted=untrusted)
    _check_same(loaded, est)
    # Training goes on from the loaded optimizer state as from the original.
    if name in ("sgd", "regressor"):  # lbfgs, early stopping: no partial_fit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = est.partial_fit(X, y)
            b = loaded.partial_fit(X, y)
        _check_same(b, a)


def test_model_file_records_version_and_warns_on_mismatch():
    est = _fitted("sgd")
    state = est.__getstate__()
    assert state["_fastbp_version"] == fastbp.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastbpVersionWarning)
        pickle.loads(pickle.dumps(est))  # same version: silent
    old = pickle.dumps(est).replace(
        fastbp.__version__.encode(), b"0.0.1", 1)
    with pytest.warns(FastbpVersionWarning, match="saved by fastbp 0.0.1"):
        loaded = pickle.loads(old)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
