"""Reliability: bad input, property-based fuzzing, faults, interrupts,
threads, memory and determinism, each tried rather than assumed."""

import os
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
import fastbp._mlp
from fastbp._params import PARAMETER_RULES as _PARAMETER_RULES

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
        assert vars(est).keys() == vars(_small(cls)).keys()  # nothing fitted


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


# Parameters whose values fastbp extends beyond scikit-learn's.
_EXTENDED = {"activation", "solver", "learning_rate", "loss"}


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
                # is stricter in one way: no bools for numeric parameters;
                # and it accepts more activations, solvers and schedules).
                sk_ok = _sklearn_accepts(cls, name, value)
                if name in _EXTENDED:
                    assert check(value) or not sk_ok, (name, value)
                else:
                    assert check(value) == sk_ok, (name, value)
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


# ---------------------------------------------------------------------------
# property-based: any shape, batch, dtype, layout, solver, activation either
# trains to finite outputs or raises ValueError / TypeError, never crashes

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

LAYOUTS = ["C", "F", "strided", "sparse"]


@st.composite
def _problems(draw):
    cls = draw(st.sampled_from(ESTIMATORS))
    n_samples = draw(st.integers(1, 40))
    n_features = draw(st.integers(1, 6))
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    scale = 10.0 ** draw(st.integers(-3, 3))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.int8, bool]))
    X = (rng.randn(n_samples, n_features) * scale).astype(dtype)
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "strided":
        X = np.repeat(np.repeat(X, 2, axis=0), 3, axis=1)[::2, ::3]
    elif layout == "sparse" and X.dtype != bool:
        X = sp.csr_matrix(X * (rng.rand(*X.shape) < 0.5))
    if cls is MLPClassifier:
        y = rng.randint(draw(st.integers(1, 3)), size=n_samples)
    else:
        y = rng.randn(n_samples, draw(st.integers(1, 2)))
        y = y[:, 0] if y.shape[1] == 1 else y
    params = {
        "hidden_layer_sizes": tuple(draw(st.lists(st.integers(1, 8), max_size=2))),
        "activation": draw(st.sampled_from(["identity", "logistic", "tanh", "relu"])),
        "solver": draw(st.sampled_from(["sgd", "adam", "lbfgs"])),
        "batch_size": draw(st.sampled_from(["auto", 1, 3, 64])),
        "max_iter": draw(st.integers(1, 4)),
        "learning_rate_init": draw(st.sampled_from([1e-3, 0.1, 10.0])),
        "early_stopping": draw(st.booleans()),
        "shuffle": draw(st.booleans()),
        "random_state": 0,
    }
    return cls, X, y, params


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(_problems())
def test_property_fit_predict_finite_or_clean_error(problem):
    cls, X, y, params = problem
    est = cls(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est.fit(X, y)
        except (ValueError, TypeError):
            assert not hasattr(est, "coefs_")
            return
        assert all(np.isfinite(a).all() for a in est.coefs_ + est.intercepts_)
        try:
            pred = est.predict(X)
            proba = est.predict_proba(X) if cls is MLPClassifier else None
        except ValueError as e:
            assert "not finite" in str(e)
            return
    assert pred.shape[0] == X.shape[0]
    if proba is None:
        assert np.isfinite(pred).all()
    else:
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-4)
        assert set(np.unique(pred)) <= set(est.classes_)


# ---------------------------------------------------------------------------
# Ctrl-C inside the compiled epoch

INTERRUPTED_CHILD = """
import signal
import warnings
import numpy as np
# A child inherits ignored and blocked signals from the suite's process:
# take SIGINT's Python default back, as a fresh interpreter has it.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
import fastbp
from fastbp import _epoch

rng = np.random.RandomState(0)
X = rng.randn(20000, 100)
y = (X[:, 0] > 0).astype(int)
compiled = _epoch.run_epoch

def announced(*args, **kwargs):
    print("started", flush=True)
    return compiled(*args, **kwargs)

_epoch.run_epoch = announced
# One epoch of 20000 single-sample Adam steps on a (512, 512) network: far
# longer than the test waits before sending SIGINT.
clf = fastbp.MLPClassifier((512, 512), batch_size=1, max_iter=1, random_state=0)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    clf.fit(X, y)
print("warnings", [str(w.message) for w in caught])
print("n_iter", clf.n_iter_)
print("step", clf._optimizer["step"])
print("finite", bool(np.isfinite(clf.predict_proba(X[:100])).all()))
"""


def test_sigint_stops_the_compiled_epoch_with_a_usable_model(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    if not hasattr(signal, "SIGINT") or os.name == "nt":
        pytest.skip("needs POSIX signals")
    script = tmp_path / "child.py"
    script.write_text(INTERRUPTED_CHILD)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "started"
        time.sleep(0.5)  # well inside the epoch's nogil loop
        child.send_signal(signal.SIGINT)
        # A safety net, not a timing assertion: uninterrupted, the epoch
        # runs for minutes.
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, err
    report = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert report["warnings"] == "['Training interrupted by user.']"
    # Stopped inside the first epoch: some Adam steps taken, not all of them.
    assert report["n_iter"] == "0"
    assert 0 < int(report["step"]) < 20000
    assert report["finite"] == "True"


def test_interrupt_between_minibatches_keeps_state_consistent(monkeypatch):
    """In-process: a signal handler raising during run_epoch stops it after a
    whole step; the step count travels on the exception."""
    import signal

    from fastbp import _epoch

    X, y = _data(MLPRegressor, n_samples=400)
    monkeypatch.setattr(_epoch, "SIGNAL_CHECK_WORK", 1)  # check every batch
    fired = []

    def handler(signum, frame):
        fired.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        est = MLPRegressor(hidden_layer_sizes=(256, 256), batch_size=1, max_iter=1000, random_state=0)
        with pytest.warns(UserWarning, match="Training interrupted by user."):
            est.fit(X, y)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired
    n_steps = est._optimizer["step"]
    assert est.n_iter_ * 400 <= n_steps < est.n_iter_ * 400 + 400
    assert np.isfinite(est.predict(X)).all()


# ---------------------------------------------------------------------------
# faults: a failed fit leaves the previous model exactly as it was


def _fail_bad_input(est, X, y, monkeypatch):
    return _with(X, (0, 0), np.nan), y, ValueError, "NaN"


def _fail_divergence(est, X, y, monkeypatch):
    est.set_params(learning_rate_init=1e12)
    return X * 1e150, y, ValueError, "diverged"


def _fail_interrupt_before_training(est, X, y, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # After labels and validation were redone: they must be rolled back too.
    monkeypatch.setattr(fastbp._mlp, "check_sample_weight", interrupted)
    return X, y, KeyboardInterrupt, ""


def _fail_interrupt_with_broken_weights(est, X, y, monkeypatch):
    from fastbp import _epoch

    def interrupted(*args, **kwargs):
        args[8][:] = np.nan  # params
        raise KeyboardInterrupt

    monkeypatch.setattr(_epoch, "run_epoch", interrupted)
    return X, y, ValueError, "interrupted and the weights are not finite"


FAILURES = {
    "bad input": _fail_bad_input,
    "divergence": _fail_divergence,
    "interrupt before training": _fail_interrupt_before_training,
    "interrupt with broken weights": _fail_interrupt_with_broken_weights,
}


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("method", ["fit", "warm_start", "partial_fit"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_failed_fit_leaves_previous_model_untouched(cls, method, failure,
                                                    monkeypatch):
    import pickle

    X, y = _data(cls, n_samples=40)
    est = _small(cls, solver="sgd", max_iter=4, batch_size=5,
                 warm_start=method == "warm_start")
    if method == "partial_fit":
        kwargs = {"classes": np.unique(y)} if cls is MLPClassifier else {}
        for _ in range(3):
            est.partial_fit(X, y, **kwargs)
    else:
        _quiet(est.fit, X, y)
    saved = pickle.dumps(est)
    flat = est._fitted_model().flat.copy()
    attributes = set(vars(est))
    predictions = est.predict(X)
    params = est.get_params()

    X_bad, y_bad, error, match = FAILURES[failure](est, X, y, monkeypatch)
    call = est.partial_fit if method == "partial_fit" else est.fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match):
            call(X_bad, y_bad)
    monkeypatch.undo()
    est.set_params(**params)

    assert set(vars(est)) == attributes
    assert pickle.dumps(est) == saved  # every attribute, bit for bit
    np.testing.assert_array_equal(est._fitted_model().flat, flat)
    assert all(a.base is est._fitted_model().flat for a in est.coefs_ + est.intercepts_)
    np.testing.assert_array_equal(est.predict(X), predictions)


def test_pickling_does_not_touch_the_live_estimator():
    import pickle

    X, y = _data(MLPRegressor)
    est = _quiet(_small(MLPRegressor).fit, X, y)
    before = dict(vars(est))
    pickle.dumps(est)
    assert vars(est).keys() == before.keys()
    assert all(vars(est)[k] is v for k, v in before.items())


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_failed_lbfgs_and_adam_fits_keep_previous_model(solver):
    import pickle

    X, y = _data(MLPRegressor, n_samples=40)
    est = _quiet(_small(MLPRegressor, solver=solver, warm_start=True).fit, X, y)
    saved = pickle.dumps(est)
    est.set_params(learning_rate_init=1e12)
    with pytest.raises(ValueError, match="diverged"):
        _quiet(est.fit, X * 1e150, y * 1e150)
    est.set_params(learning_rate_init=0.001)
    assert pickle.dumps(est) == saved


# ---------------------------------------------------------------------------
# threads: the GIL is released, so estimators are fitted and used from many
# threads at once; results must be those of sequential runs, bit for bit


def _assert_identical(a, b):
    assert len(a.coefs_) == len(b.coefs_)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p, q)
    assert a.loss_ == b.loss_ and a.n_iter_ == b.n_iter_
    assert getattr(a, "loss_curve_", None) == getattr(b, "loss_curve_", None)


THREAD_JOBS = [
    (MLPClassifier, {"solver": "adam", "batch_size": 16, "random_state": 1}),
    (MLPClassifier, {"solver": "sgd", "batch_size": 1, "random_state": 2,
                     "early_stopping": True}),
    (MLPRegressor, {"solver": "adam", "batch_size": 32, "random_state": 3,
                    "activation": "tanh"}),
    (MLPRegressor, {"solver": "lbfgs", "random_state": 4}),
]


def _thread_job(i):
    cls, params = THREAD_JOBS[i]
    X, y = _data(cls, n_samples=600, n_features=10, seed=i)
    if i == 2:
        X = sp.csr_matrix(X * (np.abs(X) > 0.5))  # sparse input too
    return cls(hidden_layer_sizes=(32, 16), max_iter=8, **params), X, y


def test_fits_in_threads_equal_sequential_fits():
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    jobs = [_thread_job(i) for i in range(len(THREAD_JOBS))]
    sequential = [_quiet(est.fit, X, y) for est, X, y in
                  (_thread_job(i) for i in range(len(THREAD_JOBS)))]
    barrier = Barrier(len(jobs))

    def fit(job):
        est, X, y = job
        barrier.wait()
        return est.fit(X, y)

    for _ in range(2):
        # Warning filters are process-wide: set them here, not per thread.
        with warnings.catch_warnings(), ThreadPoolExecutor(len(jobs)) as pool:
            warnings.simplefilter("ignore", ConvergenceWarning)
            threaded = list(pool.map(fit, jobs))
        for a, b in zip(threaded, sequential):
            _assert_identical(a, b)
        jobs = [_thread_job(i) for i in range(len(THREAD_JOBS))]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_one_estimator_predicts_from_eight_threads(cls):
    from concurrent.futures import ThreadPoolExecutor

    X, y = _data(cls, n_samples=3000, n_features=10)
    est = _quiet(_small(cls, hidden_layer_sizes=(32,), max_iter=5).fit, X, y)
    methods = ["predict"] + (["predict_proba"] if cls is MLPClassifier else [])
    chunks = [(m, s) for m in methods for s in
              (slice(0, 3000), slice(5, 2500), slice(1000, 1001), slice(7, 2999, 2))]
    expected = [getattr(est, m)(X[s]) for m, s in chunks]

    def work(k):
        out = []
        for j in range(6):
            m, s = chunks[(k + j) % len(chunks)]
            out.append(((k + j) % len(chunks), getattr(est, m)(X[s])))
        return out

    with ThreadPoolExecutor(8) as pool:
        for results in pool.map(work, range(8)):
            for index, got in results:
                np.testing.assert_array_equal(got, expected[index])


# ---------------------------------------------------------------------------
# memory


def _rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def test_repeated_fit_predict_partial_fit_does_not_grow():
    import gc
    import tracemalloc

    X, y = make_classification_data(200, 20, 3)
    Xr, yr = make_regression_data(200, 20)
    X_sparse = sp.csr_matrix(X * (np.abs(X) > 1))

    def cycle(i):
        clf = MLPClassifier((8,), max_iter=1, random_state=i)
        clf.fit(X if i % 2 else X_sparse, y)
        clf.predict(X)
        clf.predict_proba(X_sparse)
        clf.partial_fit(X, y)
        reg = MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs" if i % 3 == 0
                           else "sgd", max_iter=1, random_state=i)
        reg.fit(Xr, yr)
        reg.predict(Xr)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(20):  # warm-up: caches, lazy imports, allocator pools
            cycle(i)
        gc.collect()
        rss_before = _rss_bytes()
        tracemalloc.start()
        try:
            traced_before = tracemalloc.get_traced_memory()[0]
            for i in range(200):
                cycle(i)
            gc.collect()
            traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
        finally:
            tracemalloc.stop()
    rss_after = _rss_bytes()
    # One leaked copy of X per cycle would be 200 * 32 kB = 6.4 MB.
    assert traced_growth < 1 * 2**20, traced_growth
    if rss_before is not None:
        assert rss_after - rss_before < 24 * 2**20, rss_after - rss_before


@pytest.mark.parametrize("early_stopping", [False, True])
def test_training_memory_is_not_a_copy_of_X_per_epoch(early_stopping):
    import gc
    import tracemalloc

    X, y = make_classification_data(20000, 50, 2)  # 8 MB of float64
    peaks = []
    for epochs in (1, 4):
        clf = MLPClassifier((32,), max_iter=epochs, batch_size=32, random_state=0,
                            early_stopping=early_stopping, n_iter_no_change=99)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            _quiet(clf.fit, X, y)
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
        finally:
            tracemalloc.stop()
    # Peak extra memory: the validation split copies X once per fit (as in
    # scikit-learn); otherwise only O(n_samples) index and target arrays and
    # O(parameters + batch x width) buffers. More epochs cost nothing more.
    limit = (1.35 if early_stopping else 0.25) * X.nbytes
    assert max(peaks) < limit, (peaks, X.nbytes)
    assert abs(peaks[1] - peaks[0]) < 0.02 * X.nbytes, peaks


# ---------------------------------------------------------------------------
# determinism

DETERMINISM_CHILD = """
import hashlib, sys, warnings
import numpy as np
from sklearn.datasets import make_classification
import fastbp
warnings.simplefilter("ignore")
X, y = make_classification(400, 30, random_state=0)
for solver in ("sgd", "adam", "lbfgs"):
    for dtype in ("float64", "float32"):
        # n_jobs fixed: None follows the process's OpenMP limits, which the
        # suite's earlier tests and a fresh process need not share.
        est = fastbp.MLPClassifier((24, 12), solver=solver, batch_size=32,
                                   max_iter=4, random_state=7, n_jobs=2)
        est.fit(X.astype(dtype), y)
        h = hashlib.sha256()
        for a in est.coefs_ + est.intercepts_:
            h.update(a.tobytes())
        print(solver, dtype, h.hexdigest())
"""


def _digests(text):
    return dict((" ".join(line.split()[:2]), line.split()[2])
                for line in text.strip().splitlines())


def test_same_random_state_is_bit_identical_run_after_run(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(DETERMINISM_CHILD)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, os.environ.get("PYTHONPATH", "")]))
    # A fresh process, and twice this one after all the suite ran before.
    runs = [subprocess.run([sys.executable, str(script)], capture_output=True,
                           text=True, env=env, check=True, timeout=300).stdout]
    import contextlib
    import io

    for _ in range(2):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(DETERMINISM_CHILD, "child", "exec"), {})
        runs.append(out.getvalue())
    digests = [_digests(r) for r in runs]
    assert len(digests[0]) == 6
    assert digests[0] == digests[1] == digests[2]


def _fit_with_blas_threads(threads, solver, dtype):
    from threadpoolctl import threadpool_limits

    X, y = make_classification_data(2000, 200, 2)
    with threadpool_limits(threads):
        return _quiet(MLPClassifier((256, 128), solver=solver, batch_size=512,
                                    max_iter=2, random_state=0, n_jobs=1).fit,
                      X.astype(dtype), y)


@pytest.mark.parametrize(
    "solver, dtype",
    [("sgd", np.float64), ("adam", np.float64), ("adam", np.float32),
     ("lbfgs", np.float64)],
)
def test_one_and_two_blas_threads(solver, dtype):
    """Bit-identical by construction, on every CPU: fastbp holds BLAS on one
    thread inside its passes (its own n_jobs threads split rows instead), so
    BLAS's thread count, and how OpenBLAS's kernel for the CPU (Haswell,
    SkylakeX, ...) would split a product, cannot change a result; and the
    same count gives the same bits run after run (README: Guarantees)."""
    pytest.importorskip("threadpoolctl")
    fits = {t: [_fit_with_blas_threads(t, solver, dtype) for _ in range(2)]
            for t in (1, 2)}
    first = fits[1][0]
    for fit in (fits[1][1], *fits[2]):
        for a, b in zip(first.coefs_ + first.intercepts_,
                        fit.coefs_ + fit.intercepts_):
            np.testing.assert_array_equal(a, b)


def test_compiled_epoch_releases_the_gil(monkeypatch):
    """While one thread is inside run_epoch, this thread keeps running Python
    code and sees the weights change step after step. Had the epoch held the
    GIL, this thread would only run before and after it (no timing involved:
    the count of distinct weight states observed is the evidence)."""
    import threading

    from fastbp import _epoch

    compiled = _epoch.run_epoch
    entered, returned = threading.Event(), threading.Event()
    buffers = []

    def observed(*args, **kwargs):
        buffers.append(args[8])  # the flat parameter buffer, trained in place
        entered.set()
        try:
            return compiled(*args, **kwargs)
        finally:
            returned.set()

    monkeypatch.setattr(_epoch, "run_epoch", observed)
    X, y = make_classification_data(6000, 100, 2)
    est = MLPClassifier((256,), solver="sgd", batch_size=1, max_iter=1,
                        random_state=0)
    worker = threading.Thread(target=est.fit, args=(X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        worker.start()
        assert entered.wait(60)
        states, last = 0, None
        while not returned.is_set():
            now = buffers[0][:64].tobytes()
            states += now != last
            last = now
        worker.join()
    assert states >= 5, states  # a held GIL allows 2 at most: before, after
    assert est.n_iter_ == 1


# ---------------------------------------------------------------------------
# the NumPy twin's Poisson loss skips y == 0 as the kernel does


def test_poisson_zero_targets_with_zero_predictions_train_alike_on_both_backends():
    # learning_rate_init=2000 drives exp's output to exactly 0 where y == 0:
    # 0 log(0 / 0) is 0 in the kernel; the twin once made it NaN and diverged.
    X, y = np.ones((4, 1)), np.zeros(4)
    fits = {}
    for backend in ("cython", "numpy"):
        est = MLPRegressor(loss="poisson", hidden_layer_sizes=(), solver="sgd",
                           momentum=0, learning_rate_init=2000.0, max_iter=3,
                           random_state=0, backend=backend)
        fits[backend] = _quiet(est.fit, X, y)
    assert np.min(fits["cython"].predict(X)) == 0  # the case: p underflowed
    for name in ("loss_curve_", "coefs_", "intercepts_"):
        np.testing.assert_allclose(getattr(fits["numpy"], name),
                                   getattr(fits["cython"], name), rtol=1e-12)
    assert np.isfinite(fits["numpy"].loss_curve_).all()


# ---------------------------------------------------------------------------
# check_gradients names what it takes


def test_check_gradients_refuses_other_estimators_with_a_type_error():
    from fastbp import check_gradients

    X, y = _data(MLPClassifier)
    other = _quiet(sk.MLPClassifier((3,), max_iter=3, random_state=0).fit, X, y)
    for est in (other, "not an estimator"):
        with pytest.raises(TypeError, match=r"fastbp.MLPClassifier or "
                           r"fastbp.MLPRegressor, got .*(MLPClassifier|str)"):
            check_gradients(est, X, y)


# ---------------------------------------------------------------------------
# non-finite output is refused on every path, as predict refuses it


def _absurd_regressor():
    # The kind of fit: sgd, leaky_relu, y of -1.3e5 unscaled. It
    # ends with finite but huge weights; what they compute overflows.
    rng = np.random.RandomState(28)
    X, y = rng.randn(20, 4), np.full(20, -1.3e5) + rng.randn(20)
    est = _quiet(MLPRegressor(hidden_layer_sizes=(4,), activation="leaky_relu",
                              solver="sgd", learning_rate_init=0.01, max_iter=5,
                              random_state=28).fit, X, y)
    assert all(np.isfinite(c).all() for c in est.coefs_ + est.intercepts_)
    assert est.loss_curve_[-1] > 1e100
    return est, X, y


def test_every_output_of_absurd_weights_is_refused():
    from fastbp import check_gradients

    est, X, y = _absurd_regressor()
    v = np.ones(sum(c.size for c in est.coefs_ + est.intercepts_))
    outputs = {
        "predict": (lambda: est.predict(X), "network's output"),
        "jacobian": (lambda: est.jacobian(X), "Jacobian"),
        "loss_gradient": (lambda: est.loss_gradient(X, y), "loss or its gradient"),
        "hessian_vector_product": (lambda: est.hessian_vector_product(X, y, v),
                                   "Hessian-vector product"),
        "hessian": (lambda: est.hessian(X, y), "Hessian"),
        "check_gradients": (lambda: check_gradients(est, X, y), "gradient"),
    }
    for name, (output, what) in outputs.items():
        with pytest.raises(ValueError, match=f"{what}.* is not finite") as info:
            output()
        assert "largest |weight| " in str(info.value), name
        assert "scale" in str(info.value), name


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_transform_and_jacobian_refuse_overflowing_input(cls):
    # The issue's inputs: 1e308 everywhere, and float64 beyond float32's range
    # on a float32 model. transform must raise exactly when its NumPy oracle
    # (relu(X W + b) in the model's dtype) is not finite.
    X, y = _data(cls)
    refused = 0
    for dtype in (np.float64, np.float32):
        est = _quiet(_small(cls).fit, X.astype(dtype), y)
        for value in (1e308, -1.7e308, 1.7e308, 1e39, -1e39):
            Xh = np.full((3, 4), value)
            with np.errstate(all="ignore"):
                oracle = np.maximum(Xh.astype(dtype) @ est.coefs_[0]
                                    + est.intercepts_[0], 0)
            for output in (est.transform, est.jacobian):
                try:
                    out = output(Xh)
                except ValueError as e:
                    assert "is not finite" in str(e) and f"{dtype.__name__} network" in str(e)
                    assert output == est.jacobian or not np.isfinite(oracle).all()
                    refused += 1
                else:
                    assert np.isfinite(out).all()
                    if output == est.transform:
                        np.testing.assert_allclose(out, oracle, rtol=1e-5)
    assert refused >= 2  # the inputs do overflow: the rule was exercised
    # Finite input still gives finite output.
    assert np.isfinite(est.transform(X)).all() and np.isfinite(est.jacobian(X)).all()


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_a_minibatch_of_zero_weights_is_refused_naming_it(backend, method):
    """Its weighted mean loss is undefined (scikit-learn's np.average raises
    ZeroDivisionError): both backends raise the same ValueError, and the
    estimator keeps what it had."""
    X, y = make_regression_data(8, 3)
    sample_weight = np.r_[np.ones(4), np.zeros(4)]  # the second batch
    est = MLPRegressor(hidden_layer_sizes=(4,), batch_size=4, shuffle=False,
                       max_iter=3, random_state=0, backend=backend)
    with pytest.raises(ValueError, match=r"rows 4 to 8 .* sum to zero"):
        getattr(est, method)(X, y, sample_weight=sample_weight)
    assert not hasattr(est, "coefs_")


def test_import_with_scipy_array_api_switch():
    """SCIPY_ARRAY_API=1 (scikit-learn's array-API mode needs it) turns
    scipy.special.expit into a dispatching wrapper; fastbp still imports and
    its logistic output is scipy's."""
    import subprocess
    import sys

    code = (
        "import numpy as np, scipy.special, fastbp\n"
        "from fastbp import _kernels\n"
        "assert not isinstance(scipy.special.expit, np.ufunc)\n"
        "X = np.random.default_rng(0).standard_normal((40, 3))\n"
        "y = (X[:, 0] > 0).astype(int)\n"
        "m = fastbp.MLPClassifier((4,), activation='logistic', max_iter=5,\n"
        "                         random_state=0).fit(X, y)\n"
        "h = scipy.special.expit(X @ m.coefs_[0] + m.intercepts_[0])\n"
        "np.testing.assert_allclose(m.transform(X), h, rtol=1e-12)\n"
        "print('OK')\n")
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "OK", done.stderr[-2000:]
