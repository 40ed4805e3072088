"""ONNX export: onnxruntime's outputs against fastbp's own predictions."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError

import fastbp
from fastbp import MLPClassifier, MLPRegressor
from fastbp._families import HIDDEN_ACTIVATIONS, SKLEARN_ACTIVATIONS

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
rt = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def _run(model, X):
    session = rt.InferenceSession(model.SerializeToString(),
                                  providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(150, 6, n_informative=4, n_classes=3,
                               random_state=0)
    return X, y


TARGETS = {
    "binary": lambda y: y % 2,
    "multiclass": lambda y: y,
    "strings": lambda y: np.array(["cat", "dog", "emu"])[y],
    "multilabel": lambda y: np.c_[y == 0, y != 1, y == 2].astype(int),
}


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_classifier_matches_predict_and_proba(data, activation, target):
    X, y = data
    y = TARGETS[target](y)
    clf = MLPClassifier((7, 5), activation=activation, max_iter=40,
                        random_state=0).fit(X, y)
    X32 = X.astype(np.float32)
    label, proba = _run(fastbp.to_onnx(clf), X32)
    np.testing.assert_allclose(proba, clf.predict_proba(X32), atol=1e-5)
    np.testing.assert_array_equal(label, clf.predict(X32))


# fastbp's own hidden activations, from the table: a new one is tested here.
NEW_ACTIVATIONS = [a for a in HIDDEN_ACTIVATIONS if a not in SKLEARN_ACTIVATIONS]


@pytest.mark.parametrize(
    "activation", NEW_ACTIVATIONS + [("gelu", "tanh"), ["relu", "silu"]], ids=str
)
def test_new_and_per_layer_activations_export(activation):
    X, y = make_regression(120, 5, n_targets=2, random_state=1)
    reg = MLPRegressor(hidden_layer_sizes=(6, 4), activation=activation,
                       max_iter=60, random_state=0).fit(X, y / 100)
    # Inputs reaching the negative tails and the softplus/elu saturation.
    X_test = np.r_[X, 10 * X[:20]]
    # float64 graphs evaluate gelu's erf in float32 (onnxruntime has no
    # double Erf kernel).
    gelu = "gelu" in np.atleast_1d(activation)
    for dtype, atol in [(np.float32, 2e-5), (np.float64, 1e-6 if gelu else 1e-12)]:
        (out,) = _run(fastbp.to_onnx(reg, dtype=dtype), X_test.astype(dtype))
        np.testing.assert_allclose(out, reg.predict(X_test), rtol=1e-5, atol=atol)


@pytest.mark.parametrize("loss", ["squared_error", "poisson", "absolute_error",
                                  "huber", "quantile", "gamma"])
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor_matches_predict(loss, n_outputs):
    X, y = make_regression(120, 5, n_targets=n_outputs, random_state=1)
    if loss in ("poisson", "gamma"):  # exp outputs
        y = np.exp(y / np.abs(y).max())
    extra = {"quantile": {"quantile": 0.8}, "huber": {"huber_delta": 5.0}}
    reg = MLPRegressor(loss, hidden_layer_sizes=(6,), activation="tanh",
                       max_iter=60, random_state=0, **extra.get(loss, {})).fit(X, y)
    for dtype, atol in [(np.float32, 1e-5), (np.float64, 1e-12)]:
        (out,) = _run(fastbp.to_onnx(reg, dtype=dtype), X.astype(dtype))
        assert out.dtype == dtype and out.shape == (len(X), n_outputs)
        pred = reg.predict(X).reshape(len(X), -1)
        np.testing.assert_allclose(out, pred, rtol=1e-5, atol=atol)


def test_sparse_and_float32_trained_models_export(data):
    X, y = data
    for X_fit in (sp.csr_matrix(X), X.astype(np.float32)):
        clf = MLPClassifier((4,), max_iter=20, random_state=0).fit(X_fit, y)
        _, proba = _run(fastbp.to_onnx(clf), X.astype(np.float32))
        np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-5)


def test_model_records_fastbp_version(data):
    clf = MLPClassifier((3,), max_iter=5, random_state=0).fit(*data)
    model = fastbp.to_onnx(clf)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["fastbp_version"] == fastbp.__version__
    assert model.producer_name == "fastbp"


def test_errors(data):
    with pytest.raises(NotFittedError):
        fastbp.to_onnx(MLPClassifier())
    clf = MLPClassifier((3,), max_iter=5, random_state=0).fit(*data)
    with pytest.raises(ValueError, match="float32 or float64"):
        fastbp.to_onnx(clf, dtype=np.int32)
