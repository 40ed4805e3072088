"""Reliability: bad input, property-based fuzzing, faults, interrupts,
threads, memory and determinism, each tried rather than assumed."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_classification_data, make_regression_data
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils._param_validation import (
    InvalidParameterError,
    validate_parameter_constraints,
)

from fastbp import MLPClassifier, MLPRegressor
from fastbp._mlp import _PARAMETER_RULES

SK = {MLPClassifier: sk.MLPClassifier, MLPRegressor: sk.MLPRegressor}
ESTIMATORS = [MLPClassifier, MLPRegressor]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _data(cls, n_samples=30, n_features=4, seed=0):
    if cls is MLPClassifier:
        return make_classification_data(n_samples, n_features, 3, seed)
    return make_regression_data(n_samples, n_features, seed=seed)


def _small(cls, **params):
    return cls(**{"hidden_layer_sizes": (4,), "max_iter": 3, "random_state": 0,
                  **params})


def _with(a, index, value):
    a = np.array(a, dtype=float)
    a[index] = value
    return a


# ---------------------------------------------------------------------------
# bad input: (id, how to build X, y, sample_weight, error, message pattern)

X0, Y0 = make_regression_data(20, 3)
N = len(X0)
X_SPARSE_NAN = sp.csr_matrix(X0)
X_SPARSE_NAN.data[2] = np.nan
X_SPARSE_INF = sp.csr_matrix(X0)
X_SPARSE_INF.data[2] = np.inf

BAD_FIT = [
    ("X NaN", _with(X0, (0, 0), np.nan), Y0, None, ValueError, "Input X contains NaN"),
    ("X inf", _with(X0, (1, 2), np.inf), Y0, None, ValueError, "Input X contains inf"),
    ("X -inf", _with(X0, (1, 2), -np.inf), Y0, None, ValueError,
     "Input X contains inf"),
    ("y NaN", X0, _with(Y0, 3, np.nan), None, ValueError, "Input y contains NaN"),
    ("y inf", X0, _with(Y0, 3, np.inf), None, ValueError, "Input y contains inf"),
    ("sw NaN", X0, Y0, _with(np.ones(N), 4, np.nan), ValueError,
     "Input sample_weight contains NaN"),
    ("sw inf", X0, Y0, _with(np.ones(N), 4, np.inf), ValueError,
     "Input sample_weight contains inf"),
    ("sw negative", X0, Y0, _with(np.ones(N), 4, -1), ValueError,
     "Negative values in data passed to `sample_weight`"),
    ("sw negative scalar", X0, Y0, -2.0, ValueError, "Negative values"),
    ("sw all zero", X0, Y0, np.zeros(N), ValueError, "at least one non-zero"),
    ("sw wrong length", X0, Y0, np.ones(N - 1), ValueError,
     r"sample_weight.shape == \(19,\), expected \(20,\)"),
    ("sw 2-D", X0, Y0, np.ones((N, 1)), ValueError, "Sample weights must be 1D"),
    ("sw complex", X0, Y0, np.ones(N) + 1j, ValueError, "Complex data not supported"),
    ("sw strings", X0, Y0, np.array(["a"] * N), ValueError, "could not convert"),
    ("X empty", np.zeros((0, 3)), np.zeros(0), None, ValueError,
     r"0 sample\(s\) \(shape=\(0, 3\)\)"),
    ("X no features", np.zeros((N, 0)), Y0, None, ValueError, r"0 feature\(s\)"),
    ("X 1-D", X0[:, 0], Y0, None, ValueError, "Expected 2D array, got 1D"),
    ("X scalar", np.float64(3.0), Y0, None, ValueError, "Expected 2D array, got scalar"),
    ("X 3-D", X0.reshape(N, 3, 1), Y0, None, ValueError, "dim 3"),
    ("X complex", X0 + 1j, Y0, None, ValueError, "Complex data not supported"),
    ("X strings", np.array([["a", "b"]] * N), Y0, None, ValueError,
     "could not convert string to float"),
    ("X objects", np.array([[{}, None]] * N, dtype=object), Y0, None,
     (ValueError, TypeError), "float"),
    ("X ragged", [[1.0, 2.0], [3.0]], [0.0, 1.0], None, ValueError,
     "inhomogeneous"),
    ("y too short", X0, Y0[:-1], None, ValueError,
     r"inconsistent numbers of samples: \[20, 19\]"),
    ("y too long", X0, np.r_[Y0, 0.0], None, ValueError,
     r"inconsistent numbers of samples: \[20, 21\]"),
    ("y 3-D", X0, Y0.reshape(N, 1, 1), None, ValueError, "dim 3"),
    ("y None", X0, None, None, ValueError, "requires y to be passed"),
    ("y complex", X0, Y0 + 1j, None, ValueError, "Complex data not supported"),
    ("sparse NaN", X_SPARSE_NAN, Y0, None, ValueError, "Input X contains NaN"),
    ("sparse inf", X_SPARSE_INF, Y0, None, ValueError, "Input X contains inf"),
]


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    "X, y, sample_weight, error, match", [case[1:] for case in BAD_FIT],
    ids=[case[0] for case in BAD_FIT],
)
def test_bad_fit_input_raises_naming_the_problem(cls, X, y, sample_weight, error,
                                                 match):
    if cls is MLPClassifier and y is not None:
        y = np.asarray(y)
        if y.dtype.kind == "f" and np.isfinite(y).all():
            y = (y > 0).astype(int)
    for method in ("fit", "partial_fit"):
        est = _small(cls)
        kwargs = {"sample_weight": sample_weight}
        if method == "partial_fit" and cls is MLPClassifier:
            kwargs["classes"] = [0, 1]
        with pytest.raises(error, match=match):
            getattr(est, method)(X, y, **kwargs)
        assert not hasattr(est, "coefs_")


@pytest.mark.parametrize(
    "y, error, match",
    [
        (np.linspace(0, 1, N), ValueError, "Unknown label type"),
        (np.array(["a", 1] * (N // 2), dtype=object), TypeError, "not supported"),
        (_with(np.arange(N) % 2, 0, np.nan), ValueError, "Input y contains NaN"),
    ],
    ids=["continuous", "mixed types", "NaN"],
)
def test_bad_classifier_labels_raise(y, error, match):
    with pytest.raises(error, match=match):
        _small(MLPClassifier).fit(X0, y)


def test_bad_regression_targets_raise():
    with pytest.raises(ValueError, match="could not convert string to float"):
        _small(MLPRegressor).fit(X0, np.array(["a"] * N))
    with pytest.raises(ValueError, match="negative.*Poisson"):
        _small(MLPRegressor, loss="poisson").fit(X0, Y0 - 10)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_bad_predict_input_raises(cls):
    X, y = _data(cls)
    est = _small(cls)
    for method in ("predict", "score"):
        args = (X,) if method == "predict" else (X, y)
        with pytest.raises(NotFittedError, match="not fitted yet"):
            getattr(est, method)(*args)
    _quiet(est.fit, X, y)
    cases = [
        (X[:, :3], "X has 3 features, but .* is expecting 4 features"),
        (sp.csr_matrix(X[:, :3]), "X has 3 features"),
        (np.hstack([X, X]), "X has 8 features"),
        (_with(X, (0, 0), np.nan), "Input X contains NaN"),
        (_with(X, (0, 0), np.inf), "Input X contains inf"),
        (X[0], "Expected 2D array, got 1D"),
        (X[:0], r"0 sample\(s\)"),
        (X[:, :, None], "dim 3"),
        (X + 1j, "Complex data not supported"),
        # Overflow inside the network: an error, never NaN output.
        (np.full((2, X.shape[1]), 1.7e308), "output is not finite"),
    ]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            est.predict(bad)
    with pytest.raises(ValueError, match="X has 3 features"):
        est.partial_fit(X[:, :3], y)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_float32_model_overflowing_float64_input_is_an_error(cls):
    X, y = _data(cls)
    est = _quiet(_small(cls).fit, X.astype(np.float32), y)
    # 1e300 is finite in float64 but overflows the float32 network.
    with pytest.raises(ValueError, match="not finite.*float32"):
        est.predict(X * 1e300)


# Inputs scikit-learn accepts: fastbp must accept them too and train the same
# model (same random_state, same trajectory).
def _awkward_inputs():
    X, y = make_classification_data(24, 3, 2)
    Xr, yr = make_regression_data(24, 3)
    cases = {
        "one sample": (MLPRegressor, Xr[:1], yr[:1], {}),
        "one sample lbfgs": (MLPRegressor, Xr[:1], yr[:1], {"solver": "lbfgs"}),
        "one sample classifier": (MLPClassifier, X[:1], y[:1], {}),
        "one feature": (MLPRegressor, Xr[:, :1], yr, {}),
        "one class": (MLPClassifier, X, np.zeros(24, dtype=int), {}),
        "bool X": (MLPRegressor, Xr > 0, yr, {}),
        "int8 X": (MLPRegressor, (Xr * 3).astype(np.int8), yr, {}),
        "float16 X": (MLPRegressor, Xr.astype(np.float16), yr, {}),
        "object X": (MLPRegressor, Xr.astype(object), yr, {}),
        "y column": (MLPRegressor, Xr, yr[:, None], {}),
        "bool y": (MLPRegressor, Xr, yr > 0, {}),
        "object y": (MLPRegressor, Xr, yr.astype(object), {}),
        "string labels": (MLPClassifier, X, np.array(["a", "b"])[y], {}),
        "no hidden layer": (MLPRegressor, Xr, yr, {"hidden_layer_sizes": []}),
        "numpy layer sizes": (MLPRegressor, Xr, yr,
                              {"hidden_layer_sizes": np.array([3, 2])}),
        "batch larger than data": (MLPRegressor, Xr, yr, {"batch_size": 10**9}),
    }
    for fmt in ("csc", "coo", "lil", "dia", "bsr", "dok"):
        cases[f"sparse {fmt}"] = (MLPRegressor, sp.csr_matrix(Xr).asformat(fmt),
                                  yr, {})
    cases["sparse coo_array"] = (MLPRegressor, sp.coo_array(Xr), yr, {})
    cases["sparse int64"] = (MLPRegressor, sp.csr_matrix((Xr * 3).astype(np.int64)),
                             yr, {})
    return cases


AWKWARD = _awkward_inputs()


@pytest.mark.parametrize("name", list(AWKWARD))
def test_awkward_inputs_train_like_sklearn(name):
    cls, X, y, params = AWKWARD[name]
    ours = _quiet(_small(cls, **params).fit, X, y)
    theirs = _quiet(_small(SK[cls], **params).fit, X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_,
                    theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
    if cls is MLPClassifier:
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X),
                                   rtol=1e-6)
    else:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6)


@pytest.mark.parametrize("sizes", [(0,), (5, 0), (-1,), (4, -3), -1, 0])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_non_positive_layer_sizes_raise(cls, sizes):
    X, y = _data(cls)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        _small(cls, hidden_layer_sizes=sizes).fit(X, y)


@pytest.mark.parametrize("sizes", [(2.5,), ("4",), "10", None, (True,)])
def test_non_integer_layer_sizes_raise(sizes):
    X, y = _data(MLPRegressor)
    with pytest.raises((ValueError, TypeError), match="hidden_layer_sizes"):
        _small(MLPRegressor, hidden_layer_sizes=sizes).fit(X, y)


# Values tried against every rule: each rule rejects some of them.
_CANDIDATES = [
    None, True, False, 0, 1, 2, -1, 10**9, 0.0, 0.5, 1.0, 1.5, -0.5, -1.0,
    np.inf, -np.inf, np.nan, "bad", "", "auto", (5,), [], object(),
    np.float64(0.5), np.int64(3), np.int64(-3),
]


def _sklearn_accepts(cls, name, value):
    constraints = SK[cls]._parameter_constraints
    try:
        validate_parameter_constraints(
            {name: constraints[name]}, {name: value}, caller_name=cls.__name__
        )
    except InvalidParameterError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(_PARAMETER_RULES))
def test_every_parameter_rule_rejects_with_its_name(name):
    """Iterates over _PARAMETER_RULES, so new parameters are covered."""
    check, allowed = _PARAMETER_RULES[name]
    estimators = [c for c in ESTIMATORS if name in c().get_params()]
    assert estimators, f"{name} is no parameter of any estimator"
    rejected = [v for v in _CANDIDATES if not check(v)]
    assert rejected, f"no candidate value is invalid for {name}"
    for cls in estimators:
        X, y = _data(cls, n_samples=12)
        for value in _CANDIDATES:
            if name in SK[cls]._parameter_constraints and not isinstance(
                value, bool
            ):
                # Independent oracle: scikit-learn's own constraints (fastbp
                # is stricter in one way: no bools for numeric parameters).
                assert check(value) == _sklearn_accepts(cls, name, value), (
                    name, value)
            if check(value):
                continue
            with pytest.raises((ValueError, TypeError)) as info:
                _small(cls, **{name: value}).fit(X, y)
            message = str(info.value)
            assert f"'{name}' parameter of {cls.__name__}" in message, message
            assert repr(value) in message or str(value) in message


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_huge_values_diverge_clearly_never_nan(cls, solver):
    X, y = _data(cls)
    cases = [
        ({"learning_rate_init": 1e30}, X),
        ({}, X * 1e200),
        ({}, np.full_like(X, 1.7e308)),
        ({"activation": "tanh"}, X * 1e300),
    ]
    for params, Xh in cases:
        est = _small(cls, solver=solver, max_iter=5, **params)
        try:
            _quiet(est.fit, Xh, y)
        except ValueError as e:
            assert "diverged" in str(e) and "scaling" in str(e)
            assert not hasattr(est, "coefs_")
            continue
        # Training survived: weights and predictions are finite or predict
        # says why not.
        assert all(np.isfinite(c).all() for c in est.coefs_ + est.intercepts_)
        for Xp in (X, Xh):
            try:
                out = (est.predict_proba(Xp) if cls is MLPClassifier
                       else est.predict(Xp))
            except ValueError as e:
                assert "not finite" in str(e)
            else:
                assert np.isfinite(out).all()
