"""Saved and edited fitted state is checked before it is used (issue 16,
item 4): every inconsistent state raises a ValueError naming the problem,
whether it arrives in a pickle, a skops file, or by editing attributes."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
from conftest import make_classification_data, make_regression_data
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp import MLPClassifier, MLPRegressor, _fitted_state

INCONSISTENT = "fitted state is inconsistent"


def _fit(cls, **params):
    if cls is MLPClassifier:
        X, y = make_classification_data(30, 4, 3)
    else:
        X, y = make_regression_data(30, 4)
    params = {"hidden_layer_sizes": (4,), "max_iter": 3, "random_state": 0,
              **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(**params).fit(X, y), X, y


def _set(name, value):
    def tamper(est):
        setattr(est, name, value(est) if callable(value) else value)
    return tamper


def _item(name, i, value):
    def tamper(est):
        getattr(est, name)[i] = value(getattr(est, name)[i])
    return tamper


def _shrink_and_pad(est):
    # As the skops file: coefs_[1] (4, 3) -> (3, 3), the lost values
    # appended to the last intercept, so the parameter count is unchanged.
    est.coefs_[1] = est.coefs_[1][:3].copy()
    est.intercepts_[-1] = np.concatenate([est.intercepts_[-1], np.zeros(3)])


def _one_output(est):
    est.coefs_[1] = est.coefs_[1][:, :1].copy()
    est.intercepts_[1] = est.intercepts_[1][:1].copy()
    est.n_outputs_ = 1


def _resize_running(est):
    # Widths (4, 4) -> (5, 3): the totals still match.
    for name in ("batch_norm_mean_", "batch_norm_var_"):
        a, b = getattr(est, name)
        joined = np.concatenate([a, b])
        setattr(est, name, [joined[:5], joined[5:]])


def _optimizer(key, value):
    def tamper(est):
        est._optimizer = dict(est._optimizer)
        est._optimizer[key] = value(est._optimizer[key])
    return tamper


def _without_entry(key):
    def tamper(est):
        est._optimizer = {k: v for k, v in est._optimizer.items() if k != key}
    return tamper


def _optimizer_extra(est):
    est._optimizer = dict(est._optimizer, momentum=0.9)


C, R = MLPClassifier, MLPRegressor
BN = {"hidden_layer_sizes": (4, 4), "batch_norm": True}
# (id, estimator, parameters, tamper, what the message names)
BAD_STATES = [
    ("coefs_[1] deleted", C, {}, lambda e: e.coefs_.pop(1), r"intercepts_ has 2"),
    ("coefs_[1] shrunk, last intercept padded", C, {}, _shrink_and_pad,
     r"coefs_\[1\] has shape \(3, 3\)"),
    ("1-D coefs_[0]", C, {}, _item("coefs_", 0, np.ravel),
     r"coefs_\[0\] has 1 dimension"),
    ("0-d coefs_[0]", C, {}, _item("coefs_", 0, lambda a: np.array(1.0)),
     r"coefs_\[0\] has 0 dimension"),
    ("list for an array", C, {}, _item("coefs_", 0, lambda a: a.tolist()),
     r"coefs_\[0\] is a list, not a NumPy array"),
    ("float32 coefs_[0] in a float64 model", C, {},
     _item("coefs_", 1, lambda a: a.astype(np.float32)),
     r"coefs_\[1\] has dtype float32, the network's is float64"),
    ("tuple of coefs_", C, {}, _set("coefs_", lambda e: tuple(e.coefs_)),
     r"coefs_ is a tuple"),
    ("NaN intercept", C, {}, _item("intercepts_", 0, lambda a: a * np.nan),
     r"intercepts_\[0\] holds non-finite values"),
    ("coefs_ missing", C, {}, lambda e: delattr(e, "coefs_"), "coefs_ is missing"),
    ("bad activation", C, {}, _set("activation", "bogus"),
     "hidden activation 'bogus' is unknown"),
    ("bad out_activation_", C, {}, _set("out_activation_", "bogus"),
     "out_activation_ 'bogus'"),
    ("regressor with softmax", R, {}, _set("out_activation_", "softmax"),
     "out_activation_ 'softmax'"),
    ("bad loss", R, {}, _set("loss", "bogus"), "loss 'bogus'"),
    ("quantile loss without its quantile", R, {"loss": "quantile", "quantile": 0.5},
     _set("quantile", None), "the loss is 'quantile' but quantile is None"),
    ("quantile out of range", R, {"loss": "quantile", "quantile": 0.5},
     _set("quantile", 1.5), r"quantile 1.5 is not a float in \(0, 1\)"),
    ("quantile with another loss", R, {}, _set("quantile", 0.5),
     "quantile is set but the loss is 'squared_error'"),
    ("negative huber_delta", R, {"loss": "huber"}, _set("huber_delta", -1.0),
     "huber_delta -1.0 is not a float > 0"),
    ("huber_delta with another loss", R, {"loss": "absolute_error"},
     _set("huber_delta", 2.0), "huber_delta is set but the loss is 'absolute_error'"),
    ("n_outputs_=1 for 3 classes", C, {}, _set("n_outputs_", 1),
     "n_outputs_ is 1 but the weights make it 3"),
    ("one output for 3 classes", C, {}, _one_output,
     r"n_outputs_ is 1 but 3 classes \(multiclass targets\) need 3"),
    ("n_features_in_", C, {}, _set("n_features_in_", 5), "n_features_in_ is 5"),
    ("n_layers_", R, {}, _set("n_layers_", 4), "n_layers_ is 4"),
    ("classes_ cut", C, {}, _set("classes_", lambda e: e.classes_[:2]),
     "classes_ differs"),
    ("running statistics resized, totals kept", C, BN, _resize_running,
     r"batch_norm_mean_\[0\] has shape \(5,\)"),
    ("batch-norm scale missing", C, BN, _set("batch_norm_scale_", None),
     "batch_norm_scale_ is missing"),
    ("negative running variance", R, BN,
     _item("batch_norm_var_", 1, lambda a: -a), "negative variances"),
    ("optimizer state too short", C, {}, _optimizer("state", lambda s: s[:-1]),
     r"adam optimizer state has shape"),
    ("optimizer state of another solver", R, {"solver": "sgd"},
     _optimizer("solver", lambda s: "adam"), r"need shape \(2 \*|need shape"),
    ("unknown optimizer", C, {}, _optimizer("solver", lambda s: "bogus"),
     "unknown solver 'bogus'"),
    ("optimizer step", C, {}, _optimizer("step", lambda s: -3), "step is -3"),
    ("optimizer step a float", R, {}, _optimizer("step", float), r"step is \d+\.0"),
    ("optimizer epoch a string", C, {}, _optimizer("epoch", str), r"epoch is '\d+'"),
    ("optimizer rate a string", C, {}, _optimizer("learning_rate", str),
     "learning rate is '0.001'"),
    ("optimizer rate NaN", R, {}, _optimizer("learning_rate", lambda r: np.nan),
     "learning rate is nan"),
    ("optimizer state a list", C, {}, _optimizer("state", list),
     "optimizer state has list"),
    *[(f"optimizer {key} missing", C, {}, _without_entry(key),
       rf"_optimizer\) lacks \['{key}'\]")
      for key in ("solver", "state", "learning_rate", "step", "epoch")],
    ("optimizer with an extra entry", R, {}, _optimizer_extra,
     r"_optimizer\) has unknown entries 'momentum'"),
    ("optimizer a list", C, {}, _set("_optimizer", lambda e: list(e._optimizer)),
     r"\(_optimizer\) is a list, not a dict"),
    ("t_ negative", C, {}, _set("t_", -1), "t_ is -1"),
    ("n_iter_ a string", R, {}, _set("n_iter_", "3"), "n_iter_ is '3'"),
]
IDS = [case[0] for case in BAD_STATES]


@pytest.fixture(params=BAD_STATES, ids=IDS)
def bad_model(request):
    _, cls, params, tamper, match = request.param
    est, X, y = _fit(cls, **params)
    tamper(est)
    return est, X, y, match


def _raises_inconsistent(match):
    return pytest.raises(ValueError, match=f"{INCONSISTENT}: .*{match}")


def test_every_bad_state_is_refused_when_unpickled(bad_model):
    # At load, or (a state without coefs_, as callbacks copy mid-fit) at the
    # first use; saving does not check: the file is what is tried.
    est, X, _, match = bad_model
    data = pickle.dumps(est)
    with _raises_inconsistent(match):
        pickle.loads(data).predict(X)
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    with _raises_inconsistent(match):
        joblib.load(buffer).predict(X)


def test_every_bad_state_is_refused_when_used_after_an_edit(bad_model):
    est, X, y, match = bad_model
    uses = [est.predict, est.score]
    if isinstance(est, MLPClassifier):
        uses.append(est.predict_proba)
    for use in uses:
        with _raises_inconsistent(match):
            use(X) if use != est.score else use(X, y)


@pytest.mark.parametrize("case", ["coefs_[1] shrunk, last intercept padded",
                                  "0-d coefs_[0]", "float32 coefs_[0] in a "
                                  "float64 model", "bad activation",
                                  "n_outputs_=1 for 3 classes",
                                  "running statistics resized, totals kept"])
def test_crafted_skops_files_are_refused(case):
    sio = pytest.importorskip("skops.io")
    _, cls, params, tamper, match = BAD_STATES[IDS.index(case)]
    est, _, _ = _fit(cls, **params)
    tamper(est)
    data = sio.dumps(est)
    with _raises_inconsistent(match):
        sio.loads(data, trusted=sio.get_untrusted_types(data=data))


def test_every_use_of_an_edited_state_checks_it():
    est, X, y = _fit(MLPClassifier)
    est.coefs_.pop(1)
    uses = {
        "predict": lambda: est.predict(X),
        "predict non-plain X": lambda: est.predict(X.tolist()),
        "predict_proba": lambda: est.predict_proba(X),
        "transform": lambda: est.transform(X),
        "partial_fit": lambda: est.partial_fit(X, y),
        "warm start": lambda: est.set_params(warm_start=True).fit(X, y),
        "loss_gradient": lambda: est.loss_gradient(X, y),
        "hessian_vector_product": lambda: est.hessian_vector_product(
            X, y, np.zeros(31)),
        "hessian": lambda: est.hessian(X, y),
        "jacobian": lambda: est.jacobian(X),
        "check_gradients": lambda: fastbp.check_gradients(est, X, y),
        "unflatten_params": lambda: est.unflatten_params(np.zeros(31)),
    }
    for name, use in uses.items():
        with _raises_inconsistent("intercepts_ has 2"):
            use()
        assert len(est.coefs_) == 1, name  # a failed call changed nothing
    # A fresh fit replaces the state and may be used again.
    est.set_params(warm_start=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert est.predict_proba(X).shape == (30, 3)


def test_the_full_check_runs_only_when_the_state_changed(monkeypatch):
    calls = []
    real = _fitted_state.check_fitted_state
    def counted(est):
        calls.append(1)
        real(est)

    monkeypatch.setattr(_fitted_state, "check_fitted_state", counted)
    monkeypatch.setattr(fastbp._mlp, "check_fitted_state", counted)  # __setstate__
    est, X, y = _fit(MLPClassifier)
    for _ in range(5):
        est.predict(X[:1])
        est.predict_proba(X)
    est.partial_fit(X, y)  # fit's own new state is trusted
    est.predict(X)
    assert calls == []
    est.coefs_[0][0, 0] += 1.0  # values: nothing the check reads
    est.predict(X)
    assert calls == []
    est.coefs_[0] = est.coefs_[0].copy()  # a replaced array is checked
    est.predict(X)
    est.predict(X)
    assert calls == [1]
    est.set_params(activation="tanh")  # so is a changed parameter
    est.predict(X)
    assert calls == [1, 1]
    clone = pickle.loads(pickle.dumps(est))  # and every loaded model
    clone.predict(X)
    assert len(calls) == 3


@pytest.mark.parametrize("params", [{}, {"solver": "sgd"}, {"solver": "lbfgs"},
                                    BN, {"hidden_layer_sizes": ()}])
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_intact_states_pass(cls, params):
    est, X, y = _fit(cls, **params)
    _fitted_state.check_fitted_state(est)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    _fitted_state.check_fitted_state(cls())  # unfitted: nothing to check


@pytest.mark.parametrize("params", [
    {"loss": "absolute_error"}, {"loss": "huber"}, {"loss": "huber", "huber_delta": 0.2},
    {"loss": "quantile", "quantile": 0.9}, {"loss": "gamma"}], ids=str)
def test_intact_regression_loss_states_pass(params):
    X, y = make_regression_data(30, 4)
    y = np.exp(y) if params["loss"] == "gamma" else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0,
                           **params).fit(X, y)
    _fitted_state.check_fitted_state(est)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    np.testing.assert_array_equal(loaded.loss_gradient(X, y)[1],
                                  est.loss_gradient(X, y)[1])


@pytest.mark.parametrize("y", [np.arange(30) % 2, np.zeros(30, int),
                               np.eye(3)[np.arange(30) % 3].astype(int)],
                         ids=["binary", "one class", "multilabel"])
def test_intact_classifier_targets_pass(y):
    X, _ = make_classification_data(30, 4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier((3,), max_iter=2, random_state=0).fit(X, y)
    _fitted_state.check_fitted_state(est)
    pickle.loads(pickle.dumps(est)).predict(X)


def test_the_record_of_checked_states_does_not_outlive_its_estimators():
    import gc

    gc.collect()
    before = len(_fitted_state._checked)
    models = [_fit(MLPRegressor)[0] for _ in range(3)]
    for est in models:
        est.predict(np.zeros((1, 4)))
    assert len(_fitted_state._checked) == before + 3
    del models, est
    gc.collect()
    assert len(_fitted_state._checked) == before


def test_what_a_fit_may_leave_non_finite_passes():
    # Found by the probe: a fit on huge values can overflow rmsprop's
    # accumulator or the batch-norm running variance (to inf) while the
    # weights stay finite; such a model must still load.
    est, X, _ = _fit(MLPRegressor, solver="rmsprop", **BN)
    est._optimizer["state"][:3] = np.inf
    est.batch_norm_var_[0][:] = np.inf
    est.batch_norm_mean_[1][:] = -np.inf
    loaded = pickle.loads(pickle.dumps(est))
    assert np.isinf(loaded.batch_norm_var_[0]).all()
