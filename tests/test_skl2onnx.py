"""skl2onnx converters: pipelines holding fastbp, run in onnxruntime, against
the pipelines' own predictions."""

import functools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import VotingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

import fastbp
from fastbp import MLPClassifier, MLPRegressor
from fastbp._families import HIDDEN_ACTIVATIONS

skl2onnx = pytest.importorskip("skl2onnx", reason="the skl2onnx extra is not installed")
rt = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pd = pytest.importorskip("pandas")

ATOL = 1e-5  # float32 graphs against fastbp's own predictions


def _session(pipe, X_example, **kwargs):
    onx = skl2onnx.to_onnx(pipe, X_example, **kwargs)
    return rt.InferenceSession(onx.SerializeToString(),
                               providers=["CPUExecutionProvider"])


def _run(pipe, X, **kwargs):
    """Outputs by name for float32 X converted with options ``kwargs``."""
    X32 = X.astype(np.float32)
    session = _session(pipe, X32[:1], **kwargs)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X32}), strict=True))


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(160, 6, n_informative=4, n_classes=3, random_state=0)
    return X * [1, 10, 100, 1, 1, 0.1], y  # scales StandardScaler must undo


TARGETS = {
    "binary": lambda y: y % 2,
    "multiclass": lambda y: y,
    "strings": lambda y: np.array(["cat", "dog", "emu"])[y],
    "floats": lambda y: y.astype(float) * 2,
    "booleans": lambda y: y == 1,
    "multilabel": lambda y: np.c_[y == 0, y != 1, y == 2].astype(int),
}
ACTIVATIONS = [*HIDDEN_ACTIVATIONS, ("gelu", "tanh"), ["relu", "silu"]]


def _classifier_pipe(X, y, **params):
    params = dict(hidden_layer_sizes=(7, 5), max_iter=40, random_state=0) | params
    return make_pipeline(StandardScaler(), MLPClassifier(**params)).fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
def test_pipeline_classifier_every_activation(data, activation):
    X, y = data
    pipe = _classifier_pipe(X, y, activation=activation)
    out = _run(pipe, X, options={"zipmap": False})
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X), atol=ATOL)
    np.testing.assert_array_equal(out["label"], pipe.predict(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_pipeline_classifier_targets(data, target):
    X, y = data
    y = TARGETS[target](y)
    pipe = _classifier_pipe(X, y)
    out = _run(pipe, X, options={"zipmap": False})
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X), atol=ATOL)
    np.testing.assert_array_equal(out["label"], pipe.predict(X))
    if target == "floats":  # skl2onnx's convention: integral floats as int64
        assert out["label"].dtype == np.int64


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("target", ["binary", "strings"])
def test_zipmap_options(data, target):
    X, y = data
    y = TARGETS[target](y)
    pipe = _classifier_pipe(X, y)
    proba, classes = pipe.predict_proba(X), pipe.classes_

    out = _run(pipe, X)  # default zipmap=True: one {class: probability} per row
    maps = out["output_probability"]
    assert [sorted(m) for m in maps[:1]] == [sorted(classes.tolist())]
    got = np.array([[m[c] for c in classes] for m in maps])
    np.testing.assert_allclose(got, proba, atol=ATOL)
    np.testing.assert_array_equal(out["output_label"], pipe.predict(X))

    out = _run(pipe, X, options={"zipmap": "columns"})  # one output per class
    prefix = "i" if target == "binary" else "s"
    got = np.c_[tuple(out[f"{prefix}{c}"] for c in classes)]
    np.testing.assert_allclose(got, proba, atol=ATOL)

    out = _run(pipe, X, options={"zipmap": False, "nocl": True})  # indices
    np.testing.assert_array_equal(out["label"], proba.argmax(axis=1))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_batch_norm_is_folded(data):
    X, y = data
    pipe = _classifier_pipe(X, y, batch_norm=True, activation=("relu", "tanh"))
    assert pipe[-1].batch_norm_scale_ is not None
    out = _run(pipe, X, options={"zipmap": False})
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X), atol=ATOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_targets", [1, 2])
def test_pipeline_regressor(n_targets):
    X, y = make_regression(150, 5, n_targets=n_targets, random_state=1)
    pipe = make_pipeline(
        MinMaxScaler(),
        MLPRegressor(hidden_layer_sizes=(6, 4), activation=["softplus", "elu"], max_iter=80,
                     random_state=0)).fit(X, y / 100)
    (variable,) = _run(pipe, X).values()
    assert variable.shape == (len(X), n_targets)
    np.testing.assert_allclose(variable, pipe.predict(X).reshape(len(X), -1),
                               rtol=1e-5, atol=ATOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("loss, extra", [("gamma", {}), ("poisson", {}),
                                         ("quantile", {"quantile": 0.9}),
                                         ("huber", {"huber_delta": 0.1}),
                                         ("absolute_error", {})])
def test_pipeline_regressor_losses(loss, extra):
    # gamma and poisson predict through exp: the converter must export it
    X, y = make_regression(150, 5, random_state=1)
    y = np.exp(y / np.abs(y).max())
    pipe = make_pipeline(
        MinMaxScaler(),
        MLPRegressor(loss, hidden_layer_sizes=(6,), max_iter=80, random_state=0,
                     **extra)).fit(X, y)
    (variable,) = _run(pipe, X).values()
    np.testing.assert_allclose(variable, pipe.predict(X).reshape(len(X), -1),
                               rtol=1e-5, atol=ATOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float64_input_converts_in_double(data):
    X, y = data
    pipe = _classifier_pipe(X, y, activation="tanh")
    session = _session(pipe, X[:1], options={"zipmap": False})
    label, proba = session.run(None, {"X": X})
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba, pipe.predict_proba(X), atol=1e-12)


def _frame(n=150, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "size": rng.normal(50, 20, n).astype(np.float32),
        "weight": rng.normal(0, 0.1, n).astype(np.float32),
        "colour": rng.choice(["red", "green", "blue"], n),
    })


def _column_pipe(estimator):
    columns = ColumnTransformer([
        ("num", StandardScaler(), ["size", "weight"]),
        ("cat", OneHotEncoder(sparse_output=False), ["colour"]),
    ])
    return make_pipeline(columns, estimator)


def _frame_inputs(df):
    return {"size": df[["size"]].to_numpy(), "weight": df[["weight"]].to_numpy(),
            "colour": df[["colour"]].to_numpy()}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_column_transformer_pipelines():
    df = _frame()
    score = df["size"] / 20 + 10 * df["weight"] + (df["colour"] == "red")
    clf = _column_pipe(MLPClassifier((6,), max_iter=60, random_state=0)).fit(
        df, np.where(score > score.median(), "high", "low"))
    reg = _column_pipe(MLPRegressor(hidden_layer_sizes=(6,), activation="gelu", max_iter=60,
                                    random_state=0)).fit(df, score)
    test = _frame(40, seed=1)

    session = _session(clf, df[:1], options={"zipmap": False})
    label, proba = session.run(None, _frame_inputs(test))
    np.testing.assert_allclose(proba, clf.predict_proba(test), atol=ATOL)
    np.testing.assert_array_equal(label, clf.predict(test))

    (variable,) = _session(reg, df[:1]).run(None, _frame_inputs(test))
    np.testing.assert_allclose(variable.ravel(), reg.predict(test), rtol=1e-5,
                               atol=ATOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_two_fastbp_models_in_one_graph():
    X, y = make_regression(100, 4, random_state=2)
    vote = VotingRegressor([
        ("a", MLPRegressor(hidden_layer_sizes=(5,), activation="gelu", max_iter=50, random_state=0)),
        ("b", MLPRegressor(hidden_layer_sizes=(3, 3), activation="softsign", max_iter=50, random_state=1)),
    ]).fit(X, y / 100)
    (variable,) = _run(vote, X).values()
    np.testing.assert_allclose(variable.ravel(), vote.predict(X), rtol=1e-5, atol=ATOL)


def _python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, check=True).stdout.strip()


CONVERT = """
    import numpy as np
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    pipe = make_pipeline(StandardScaler(),
                         fastbp.MLPClassifier((3,), max_iter=3)).fit(X, X[:, 0] > 0)
    print(type(skl2onnx.to_onnx(pipe, X[:1])).__name__)
"""


@functools.cache
def _import_in_order(first):
    """The lines of a fresh interpreter that imports `first`, says whether
    skl2onnx is imported by then, imports the other and converts a pipeline.
    One process (of ~4 s, mostly imports) serves both tests below."""
    second = {"fastbp": "skl2onnx", "skl2onnx": "fastbp"}[first]
    code = f"import sys, warnings; warnings.simplefilter('ignore')\n" \
           f"import {first}\nprint('skl2onnx' in sys.modules)\n" \
           f"import {second}\n" + textwrap.dedent(CONVERT)
    return _python(code).splitlines()


@pytest.mark.parametrize("first", ["fastbp", "skl2onnx"])
def test_registration_in_either_import_order(first):
    assert _import_in_order(first)[1:] == ["ModelProto"]


def test_importing_fastbp_does_not_import_skl2onnx():
    assert _import_in_order("fastbp")[0] == "False"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_to_onnx_on_a_pipeline_points_to_skl2onnx(data):
    pipe = _classifier_pipe(*data)
    with pytest.raises(TypeError, match=r"fitted fastbp MLPClassifier or "
                       r"MLPRegressor, got Pipeline.*skl2onnx\.to_onnx"):
        fastbp.to_onnx(pipe)
    onx = fastbp.to_onnx(pipe[-1])  # the bare estimator still exports
    assert onx.graph.input[0].name == "X"
