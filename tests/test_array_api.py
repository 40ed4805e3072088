"""The array-API path (issue 28): with scikit-learn's array_api_dispatch, a
fit on array_api_strict or PyTorch (CPU) arrays follows the compiled
engine's trajectory, keeps its weights in the input's namespace, and what it
does not compute raises by name. Without the switch nothing changes.

scikit-learn's switch needs SCIPY_ARRAY_API=1 in the environment before
SciPy is imported (it raises otherwise): the tests that turn it on skip
without it; CI runs this file both ways.
"""

import os
import pickle
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._array_api import move_estimator_to

from fastbp import MLPClassifier, MLPRegressor, to_onnx
from fastbp._families import SOLVERS

NAMESPACES = ("array_api_strict", "torch")


class Space:
    """One namespace under test: moving arrays in and out."""

    def __init__(self, name):
        self.name = name
        self.module = pytest.importorskip(name)
        pytest.importorskip("sklearn.externals.array_api_compat")

    def __call__(self, a):
        return self.module.asarray(np.asarray(a))

    def host(self, a):
        if self.name == "torch":
            return a.cpu().numpy()
        cpu = self.module.Device("CPU_DEVICE")
        return np.asarray(self.module.asarray(a, device=cpu))

    def holds(self, a):
        return type(a) is type(self(np.zeros(1)))


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # These arrays are tiny: PyTorch's intra-op threads only spin, and on a
    # shared 2-core machine they made this file 3.5 times slower.
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=NAMESPACES)
def space(request):
    return Space(request.param)


@pytest.fixture
def dispatch():
    if os.environ.get("SCIPY_ARRAY_API") != "1":
        pytest.skip("scikit-learn's array_api_dispatch needs SCIPY_ARRAY_API=1")
    with sklearn.config_context(array_api_dispatch=True):
        yield


@pytest.fixture(scope="module")
def classification():
    X, y = make_classification(n_samples=120, n_features=6, n_informative=4,
                               n_classes=3, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=100, n_features=5, n_targets=2, noise=0.1,
                           random_state=0)
    return X, y / 100


SMALL = dict(hidden_layer_sizes=(7, 5), max_iter=5, batch_size=32, random_state=0)


def _fit(cls, X, y, fit=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(**{**SMALL, **params}).fit(X, y, **(fit or {}))


def _assert_same_fit(space, got, want, tol=1e-10):
    assert all(space.holds(a) for a in got.coefs_ + got.intercepts_)
    for a, b in zip(got.coefs_ + got.intercepts_, want.coefs_ + want.intercepts_):
        np.testing.assert_allclose(space.host(a), b, rtol=0, atol=tol)
    assert all(type(v) is float for v in got.loss_curve_)
    np.testing.assert_allclose(got.loss_curve_, want.loss_curve_, rtol=0, atol=tol)
    assert got.n_iter_ == want.n_iter_ and got.t_ == want.t_


@pytest.mark.parametrize("solver", [s.name for s in SOLVERS])
def test_every_solver_follows_the_compiled_trajectory(space, dispatch,
                                                      classification, solver):
    X, y = classification
    want = _fit(MLPClassifier, X, y, solver=solver)
    got = _fit(MLPClassifier, space(X), space(y), solver=solver)
    _assert_same_fit(space, got, want)


OPTIONS = [
    dict(solver="sgd", nesterovs_momentum=False, learning_rate="invscaling"),
    dict(solver="sgd", learning_rate="adaptive", n_iter_no_change=1, tol=10.0),
    dict(solver="rmsprop", clip_norm=0.05, alpha=0.1),
    dict(solver="adamw", clip_value=0.01, l1=0.01),
    dict(early_stopping=True, validation_fraction=0.2),
    dict(class_weight="balanced", shuffle=False, activation="tanh"),
    dict(activation="logistic"),
    dict(activation="softsign", learning_rate="cosine"),
    dict(activation="silu"),
    dict(activation=["elu", "leaky_relu"]),
    dict(activation="softplus"),
    dict(dropout=0.3),
    dict(dropout=[0.0, 0.5], solver="sgd", shuffle=False),
    dict(batch_norm=True),
    dict(batch_norm=True, dropout=0.2, early_stopping=True, solver="nadam"),
]


@pytest.mark.parametrize("options", OPTIONS, ids=repr)
def test_options_follow_the_compiled_trajectory(space, dispatch, classification,
                                                options):
    X, y = classification
    want = _fit(MLPClassifier, X, y, **options)
    got = _fit(MLPClassifier, space(X), space(y), **options)
    _assert_same_fit(space, got, want)
    if options.get("early_stopping"):
        np.testing.assert_allclose(got.validation_scores_, want.validation_scores_)
        np.testing.assert_allclose(got.validation_loss_curve_,
                                   want.validation_loss_curve_, atol=1e-12)


def test_sample_weight_and_validation_set(space, dispatch, classification):
    X, y = classification
    sw = np.linspace(0.1, 2.0, len(y))
    fit = dict(sample_weight=sw, X_val=X[:30], y_val=y[:30])
    want = _fit(MLPClassifier, X, y, early_stopping=True, fit=fit)
    got = _fit(MLPClassifier, space(X), space(y), early_stopping=True,
               fit=dict(sample_weight=space(sw), X_val=space(X[:30]),
                        y_val=space(y[:30])))
    _assert_same_fit(space, got, want)
    np.testing.assert_allclose(got.validation_scores_, want.validation_scores_)


@pytest.mark.parametrize("loss, params", [
    ("squared_error", {}), ("poisson", {}), ("absolute_error", {}),
    ("huber", dict(huber_delta=0.2)), ("quantile", dict(quantile=0.8)),
    ("gamma", {}),
])
def test_regressor_follows_the_compiled_trajectory(space, dispatch, regression,
                                                   loss, params):
    X, y = regression
    y = np.exp(y) if loss in ("poisson", "gamma") else y
    want = _fit(MLPRegressor, X, y, loss=loss, **params)
    got = _fit(MLPRegressor, space(X), space(y), loss=loss, **params)
    _assert_same_fit(space, got, want)
    np.testing.assert_allclose(space.host(got.predict(space(X))), want.predict(X),
                               atol=1e-10)
    assert abs(got.score(space(X), space(y)) - want.score(X, y)) < 1e-10


def test_float32_stays_float32(space, dispatch, regression):
    X, y = (a.astype(np.float32) for a in regression)
    want = _fit(MLPRegressor, X, y[:, 0])
    got = _fit(MLPRegressor, space(X), space(y[:, 0]))
    assert got.coefs_[0].dtype == space(X).dtype
    _assert_same_fit(space, got, want, tol=1e-5)
    assert got.predict(space(X)).shape == (len(X),)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_predictions_in_the_namespace(space, dispatch, classification,
                                      batch_norm):
    X, y = classification
    want = _fit(MLPClassifier, X, y, batch_norm=batch_norm)
    got = _fit(MLPClassifier, space(X), space(y), batch_norm=batch_norm)
    if batch_norm:
        for name in ("batch_norm_scale_", "batch_norm_shift_",
                     "batch_norm_mean_", "batch_norm_var_"):
            for a, b in zip(getattr(got, name), getattr(want, name)):
                assert space.holds(a), name
                np.testing.assert_allclose(space.host(a), b, atol=1e-10)
    for method in ("predict", "predict_proba", "predict_log_proba", "transform"):
        out = getattr(got, method)(space(X))
        assert space.holds(out), method
        np.testing.assert_allclose(space.host(out), getattr(want, method)(X),
                                   atol=1e-10, err_msg=method)
    assert got.score(space(X), space(y)) == pytest.approx(want.score(X, y))


def test_binary_classifier(space, dispatch, classification):
    X, y = classification
    y = (y == 1).astype(np.int64) * 3  # labels 0 and 3
    want = _fit(MLPClassifier, X, y)
    got = _fit(MLPClassifier, space(X), space(y))
    _assert_same_fit(space, got, want)
    np.testing.assert_array_equal(space.host(got.predict(space(X))), want.predict(X))
    np.testing.assert_allclose(space.host(got.predict_proba(space(X))),
                               want.predict_proba(X), atol=1e-10)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_partial_fit_and_warm_start_continue_in_the_namespace(space, dispatch,
                                                              classification,
                                                              batch_norm):
    X, y = classification
    want = MLPClassifier(**SMALL, batch_norm=batch_norm)
    got = MLPClassifier(**SMALL, batch_norm=batch_norm)
    for half in (slice(0, 60), slice(60, 120)):
        want.partial_fit(X[half], y[half], classes=np.unique(y))
        got.partial_fit(space(X[half]), space(y[half]), classes=np.unique(y))
    _assert_same_fit(space, got, want)
    for est, data in ((want, (X, y)), (got, (space(X), space(y)))):
        est.set_params(warm_start=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(*data)
    _assert_same_fit(space, got, want)


@pytest.mark.parametrize("options", [
    {}, dict(alpha=0.1, l1=0.01, class_weight="balanced", activation="tanh"),
])
def test_lbfgs_follows_the_compiled_iterates(space, dispatch, classification,
                                             options):
    X, y = classification
    want = _fit(MLPClassifier, X, y, solver="lbfgs", max_iter=15, **options)
    got = _fit(MLPClassifier, space(X), space(y), solver="lbfgs", max_iter=15,
               **options)
    assert all(space.holds(a) for a in got.coefs_ + got.intercepts_)
    for a, b in zip(got.coefs_ + got.intercepts_, want.coefs_ + want.intercepts_):
        np.testing.assert_allclose(space.host(a), b, rtol=0, atol=1e-10)
    assert type(got.loss_) is float and abs(got.loss_ - want.loss_) < 1e-12
    assert got.n_iter_ == want.n_iter_
    for est, data in ((want, (X, y)), (got, (space(X), space(y)))):
        est.set_params(warm_start=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(*data)
    for a, b in zip(got.coefs_, want.coefs_):
        np.testing.assert_allclose(space.host(a), b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("params, match", [
    (dict(solver="newton"), "solver='newton' is not supported on array-API input"),
    (dict(solver="lbfgs", batch_norm=True),
     "batch_norm with solver='lbfgs' is not supported"),
    (dict(activation="gelu"), "activation 'gelu' is not supported"),
])
def test_what_is_not_computed_here_raises_by_name(space, dispatch, classification,
                                                  params, match):
    X, y = classification
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**{**SMALL, **params}).fit(space(X), space(y))


def test_other_refusals(space, dispatch, classification):
    X, y = classification
    with pytest.raises(ValueError, match="class labels must be numbers"):
        MLPClassifier().fit(space(X), np.array(["a", "b", "c"])[y])
    with pytest.raises(ValueError, match="multilabel-indicator targets are not"):
        MLPClassifier().fit(space(X), np.eye(3, dtype=np.int64)[y])
    est = _fit(MLPClassifier, space(X), space(y))
    with pytest.raises(TypeError, match="not supported on array-API arrays"):
        est.loss_gradient(space(X), space(y))
    with pytest.raises(ValueError, match="same namespace and the same device"):
        est.predict(X)
    with pytest.raises(ValueError, match="same namespace and the same device"):
        _fit(MLPClassifier, X, y).predict(space(X))
    with sklearn.config_context(array_api_dispatch=False):
        with pytest.raises(ValueError, match="the model was fitted on"):
            est.predict(space(X))
    with pytest.raises(TypeError, match="Pickling is not supported on array-API"):
        pickle.dumps(est)
    try:
        import onnx  # noqa: F401
    except ImportError:
        pass  # to_onnx asks for onnx first
    else:
        with pytest.raises(TypeError, match=r"to_onnx \(ONNX export\) is not"):
            to_onnx(est)
    with pytest.raises(TypeError, match="This method is not supported on array-API"):
        est.jacobian(X[:2])


def test_move_estimator_to_numpy_continues_on_the_compiled_engine(
        space, dispatch, classification):
    X, y = classification
    want = _fit(MLPClassifier, X, y)
    moved = move_estimator_to(_fit(MLPClassifier, space(X), space(y)), np, "cpu")
    assert type(moved.coefs_[0]) is np.ndarray
    np.testing.assert_allclose(moved.predict_proba(X), want.predict_proba(X),
                               atol=1e-10)
    moved.partial_fit(X, y)
    want.partial_fit(X, y)
    for a, b in zip(moved.coefs_, want.coefs_):
        np.testing.assert_allclose(a, b, atol=1e-10)
    pickle.loads(pickle.dumps(moved))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_raises_as_for_numpy(space, dispatch, classification):
    X, y = classification
    for data in ((X, y), (space(X), space(y))):
        with pytest.raises(ValueError, match="diverged"):
            _fit(MLPClassifier, *data, solver="sgd", learning_rate_init=1e12,
                 momentum=0.0)


def test_numpy_input_with_the_switch_on_takes_the_compiled_engine(dispatch,
                                                                  classification):
    X, y = classification
    with sklearn.config_context(array_api_dispatch=False):
        off = _fit(MLPClassifier, X, y)
    on = _fit(MLPClassifier, X, y)
    assert type(on.coefs_[0]) is np.ndarray
    for a, b in zip(on.coefs_ + on.intercepts_, off.coefs_ + off.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert on.loss_curve_ == off.loss_curve_


def test_switch_off_converts_as_scikit_learn_does(classification):
    torch = pytest.importorskip("torch")
    X, y = classification
    want = _fit(MLPClassifier, X, y)
    got = _fit(MLPClassifier, torch.asarray(X), torch.asarray(y))
    assert type(got.coefs_[0]) is np.ndarray
    for a, b in zip(got.coefs_ + got.intercepts_, want.coefs_ + want.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert got.loss_curve_ == want.loss_curve_
