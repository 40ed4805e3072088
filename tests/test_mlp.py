"""Estimator behaviour: scikit-learn's trajectory, attributes, errors, fixes."""

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from conftest import make_classification_data, make_regression_data
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastbp
from fastbp import MLPClassifier, MLPRegressor

SK = {MLPClassifier: sk.MLPClassifier, MLPRegressor: sk.MLPRegressor}
PARITY_RTOL = 1e-6


def _fit_both(cls, X, y, sample_weight=None, **params):
    params = {"random_state": 0, "max_iter": 6, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = cls(**params).fit(X, y, sample_weight=sample_weight)
        theirs = SK[cls](**params).fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def _assert_same_model(ours, theirs, rtol=PARITY_RTOL):
    assert len(ours.coefs_) == len(theirs.coefs_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)
    for name in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_"):
        assert getattr(ours, name) == getattr(theirs, name), name
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=rtol)
    for name in ("loss_curve_", "validation_scores_"):
        if getattr(theirs, name, None) is None:
            assert getattr(ours, name, None) is None, name
        else:
            np.testing.assert_allclose(
                getattr(ours, name), getattr(theirs, name), rtol=rtol
            )
    for name in ("best_loss_", "best_validation_score_"):
        if hasattr(theirs, name):
            a, b = getattr(ours, name), getattr(theirs, name)
            if b is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, b, rtol=rtol)


def _targets(kind, seed=0):
    if kind == "multiclass":
        return make_classification_data(n_samples=80, n_classes=3, seed=seed)
    if kind == "binary":
        X, y = make_classification_data(n_samples=80, n_classes=2, seed=seed)
        return X, np.where(y == 1, "yes", "no")
    if kind == "multilabel":
        X, y = make_classification_data(n_samples=80, n_classes=3, seed=seed)
        return X, np.column_stack([y == 0, y != 1, X[:, 0] > 0]).astype(int)
    if kind == "regression":
        return make_regression_data(n_samples=80, seed=seed)
    if kind == "multioutput":
        return make_regression_data(n_samples=80, n_targets=2, seed=seed)
    if kind == "poisson":
        X, y = make_regression_data(n_samples=80, seed=seed)
        return X, np.random.RandomState(seed).poisson(np.exp(y))
    raise AssertionError(kind)


SOLVERS = [
    {"solver": "sgd", "momentum": 0.0},
    {"solver": "sgd", "nesterovs_momentum": False},
    {"solver": "sgd"},
    {"solver": "adam"},
    {"solver": "lbfgs"},
]


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda p: str(p))
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize(
    "kind", ["binary", "multiclass", "multilabel", "regression", "poisson"]
)
def test_same_trajectory_as_sklearn(solver, activation, kind):
    X, y = _targets(kind)
    cls = MLPRegressor if kind in ("regression", "poisson") else MLPClassifier
    params = dict(solver, activation=activation, hidden_layer_sizes=(7, 5))
    params["batch_size"] = 16
    if kind == "poisson":
        params["loss"] = "poisson"
        if solver["solver"] != "adam":
            params["learning_rate_init"] = 1e-3
    ours, theirs = _fit_both(cls, X, y, **params)
    _assert_same_model(ours, theirs)


@pytest.mark.parametrize("learning_rate", ["constant", "invscaling", "adaptive"])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_same_trajectory_schedules_and_early_stopping(
    learning_rate, early_stopping, solver
):
    X, y = _targets("multiclass")
    ours, theirs = _fit_both(
        MLPClassifier, X, y, solver=solver, learning_rate=learning_rate,
        early_stopping=early_stopping, max_iter=30, n_iter_no_change=2, tol=1e-2,
        hidden_layer_sizes=(6,), batch_size=20, learning_rate_init=0.05,
    )
    _assert_same_model(ours, theirs)


@pytest.mark.parametrize(
    "kind", ["binary", "multiclass", "multilabel", "regression", "multioutput"]
)
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_same_trajectory_with_sample_weight(kind, solver, early_stopping):
    if early_stopping and solver == "lbfgs":
        pytest.skip("early stopping applies to stochastic solvers only")
    X, y = _targets(kind, seed=1)
    sample_weight = np.random.RandomState(3).uniform(0.1, 3, size=len(X))
    cls = MLPRegressor if kind in ("regression", "multioutput") else MLPClassifier
    ours, theirs = _fit_both(
        cls, X, y, sample_weight=sample_weight, solver=solver, batch_size=10,
        early_stopping=early_stopping, hidden_layer_sizes=(8,),
    )
    _assert_same_model(ours, theirs)


def test_same_trajectory_partial_fit():
    X, y = _targets("multiclass")
    ours = MLPClassifier(hidden_layer_sizes=(5,), random_state=0, batch_size=8)
    theirs = sk.MLPClassifier(hidden_layer_sizes=(5,), random_state=0, batch_size=8)
    for start in range(0, 80, 20):
        batch = slice(start, start + 20)
        ours.partial_fit(X[batch], y[batch], classes=[0, 1, 2])
        theirs.partial_fit(X[batch], y[batch], classes=[0, 1, 2])
    _assert_same_model(ours, theirs)


def test_same_trajectory_warm_start():
    X, y = _targets("regression")
    ours, theirs = _fit_both(MLPRegressor, X, y, warm_start=True, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs.fit(X, y)
    _assert_same_model(ours, theirs)


def test_sparse_input_matches_dense():
    X, y = _targets("multiclass")
    X[np.abs(X) < 0.8] = 0
    dense = MLPClassifier((6,), random_state=0, max_iter=5).fit(X, y)
    for fmt in (sp.csr_matrix, sp.csc_matrix, sp.csr_array):
        sparse = MLPClassifier((6,), random_state=0, max_iter=5).fit(fmt(X), y)
        for a, b in zip(dense.coefs_, sparse.coefs_):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            dense.predict_proba(X), sparse.predict_proba(fmt(X)), rtol=1e-9
        )


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_numpy_backend_equals_cython(solver):
    X, y = _targets("multiclass")
    models = [
        MLPClassifier((6, 4), solver=solver, random_state=0, max_iter=5,
                      batch_size=13, backend=backend).fit(X, y)
        for backend in ("cython", "numpy")
    ]
    _assert_same_model(*models, rtol=1e-9)
    np.testing.assert_allclose(
        models[0].predict_proba(X), models[1].predict_proba(X), rtol=1e-9
    )


def test_float32_trains_and_predicts_in_float32():
    X, y = _targets("multiclass")
    X32 = X.astype(np.float32)
    clf = MLPClassifier((6,), random_state=0, max_iter=20).fit(X32, y)
    assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)
    assert clf.predict_proba(X32).dtype == np.float32
    clf64 = MLPClassifier((6,), random_state=0, max_iter=20).fit(X, y)
    assert clf64.coefs_[0].dtype == np.float64
    np.testing.assert_allclose(clf.coefs_[0], clf64.coefs_[0], rtol=1e-3, atol=1e-4)
    reg = MLPRegressor(hidden_layer_sizes=(6,), random_state=0, max_iter=5).fit(X32, X32[:, 0])
    assert reg.predict(X32).dtype == np.float32


def test_coefs_are_views_of_one_flat_buffer():
    X, y = _targets("multiclass")
    clf = MLPClassifier((6, 4), random_state=0, max_iter=3).fit(X, y)
    flat = clf._fitted_model().flat
    assert all(a.base is flat for a in clf.coefs_ + clf.intercepts_)
    before = clf.predict_proba(X)
    clf.coefs_[1][:] = 0  # in-place edits reach the model
    assert not np.allclose(before, clf.predict_proba(X))
    clf.coefs_[1] = np.ones_like(clf.coefs_[1])  # so do replaced entries
    expected = sk.MLPClassifier((6, 4)).fit(X, y)
    expected.coefs_ = clf.coefs_
    expected.intercepts_ = clf.intercepts_
    np.testing.assert_allclose(clf.predict_proba(X), expected.predict_proba(X))


def test_pickle_round_trip_keeps_predictions_and_views():
    X, y = _targets("multiclass")
    clf = MLPClassifier((6,), random_state=0, max_iter=3).fit(X, y)
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert all(a.base is loaded._fitted_model().flat for a in loaded.coefs_)
    loaded.partial_fit(X, y)  # training continues from the loaded state


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_partial_fit_only_for_stochastic_solvers(cls):
    # scikit-learn's MLPRegressor exposes partial_fit for lbfgs and runs a
    # full fit; here it is absent, as for the classifier.
    assert not hasattr(cls(solver="lbfgs"), "partial_fit")
    assert hasattr(cls(solver="sgd"), "partial_fit")
    with pytest.raises(AttributeError, match="no attribute 'partial_fit'") as info:
        cls(solver="lbfgs").partial_fit
    assert "not stochastic" in str(info.value.__cause__)


def test_poisson_rejects_negative_targets():
    X, y = _targets("regression")
    with pytest.raises(ValueError, match="negative.*Poisson"):
        MLPRegressor(loss="poisson").fit(X, y - 10)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_divergence_raises_and_keeps_previous_model(solver):
    X, y = _targets("regression")
    reg = MLPRegressor(hidden_layer_sizes=(5,), random_state=0, max_iter=5, solver=solver).fit(X, y)
    before = reg.predict(X)
    coefs = [c.copy() for c in reg.coefs_]
    reg.set_params(learning_rate_init=1e12, max_iter=50)
    with pytest.raises(ValueError, match="diverged.*learning rate.*scaling"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reg.fit(X * 1e150, y * 1e150)
    np.testing.assert_array_equal(reg.predict(X), before)
    for a, b in zip(reg.coefs_, coefs):
        np.testing.assert_array_equal(a, b)


def test_nan_validation_score_is_divergence():
    X, y = _targets("multiclass")
    clf = MLPClassifier(
        (5,), early_stopping=True, learning_rate_init=1e200, solver="sgd",
        random_state=0, max_iter=5,
    )
    with pytest.raises(ValueError, match="diverged"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X * 1e100, y)
    assert not hasattr(clf, "coefs_")


def _iris_diverging(**params):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    # scikit-learn's test_mlp_diverging_loss: sgd at learning rate 1.
    return X, y, MLPRegressor(
        hidden_layer_sizes=100, activation="identity", solver="sgd",
        learning_rate_init=1,
        max_iter=20, n_iter_no_change=10, random_state=0, **params)


def test_divergence_with_early_stopping_restores_the_best_epoch():
    X, y, reg = _iris_diverging(early_stopping=True)
    with pytest.warns(ConvergenceWarning, match=r"diverged at iteration (\d+).*"
                      r"weights of iteration (\d+), the best one, are restored"):
        reg.fit(X, y)
    assert np.isnan(reg.validation_scores_[-1])
    assert isinstance(reg.validation_scores_[-1], float)
    assert reg.n_iter_ == len(reg.validation_scores_) < reg.max_iter
    best = int(np.nanargmax(reg.validation_scores_)) + 1
    assert np.isfinite(reg.predict(X)).all()
    assert np.isfinite(reg._optimizer["state"]).all()  # restarted, not NaN
    # The restored weights are those a fit stopped at the best epoch ends with.
    _, _, short = _iris_diverging(early_stopping=True)
    short.set_params(max_iter=best)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        short.fit(X, y)
    for a, b in zip(reg.coefs_ + reg.intercepts_, short.coefs_ + short.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_divergence_with_restore_best_weights_keeps_the_lowest_loss():
    X, y, reg = _iris_diverging(restore_best_weights=True)
    with pytest.warns(ConvergenceWarning, match="diverged.*restored"):
        reg.fit(X, y)
    assert not np.isfinite(reg.loss_curve_[-1])
    best = int(np.nanargmin(reg.loss_curve_)) + 1
    _, _, short = _iris_diverging(restore_best_weights=True)
    short.set_params(max_iter=best)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        short.fit(X, y)
    for a, b in zip(reg.coefs_, short.coefs_):
        np.testing.assert_array_equal(a, b)


def test_divergence_without_a_best_model_raises():
    X, y, reg = _iris_diverging()
    with pytest.raises(ValueError, match="Training diverged at iteration"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reg.fit(X, y)


def test_warm_start_early_stopping_restarts_patience():
    X, y = _targets("multiclass")
    clf = MLPClassifier(
        (5,), early_stopping=True, warm_start=True, random_state=0,
        n_iter_no_change=2, max_iter=200, learning_rate_init=0.01,
    ).fit(X, y)
    first_best = clf.best_validation_score_
    n_scores = len(clf.validation_scores_)
    clf.fit(X, y)
    # The new fit's best score is its own: at most the best it recorded.
    new_scores = clf.validation_scores_[n_scores:]
    assert clf.best_validation_score_ == max(new_scores)
    assert len(new_scores) >= 3  # patience 2 was counted afresh
    assert first_best is not None


def test_keyboard_interrupt_keeps_usable_model(monkeypatch):
    X, y = _targets("multiclass")
    calls = []
    original = fastbp._reference.run_epoch

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(fastbp._reference, "run_epoch", interrupted)
    clf = MLPClassifier((5,), backend="numpy", random_state=0, max_iter=10)
    with pytest.warns(UserWarning, match="Training interrupted by user."):
        clf.fit(X, y)
    assert clf.n_iter_ == 2
    assert np.isfinite(clf.predict_proba(X)).all()


@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
def test_full_batch_interrupt_says_it_was_an_interrupt(solver, monkeypatch):
    """Ctrl-C before the first evaluation ends: the fit raises the interrupt
    and a fresh estimator stays unfitted; after it (no iteration done yet):
    'Training interrupted by user.' and the starting point with its loss,
    never a false 'diverged'."""
    X, y = _targets("multiclass")
    original = fastbp._epoch.loss_grad
    calls = []

    def interrupted_at(n):
        def loss_grad(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return original(*args, **kwargs)
        return loss_grad

    monkeypatch.setattr(fastbp._epoch, "loss_grad", interrupted_at(1))
    clf = MLPClassifier((5,), solver=solver, activation="tanh", random_state=0)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")
    calls.clear()
    monkeypatch.setattr(fastbp._epoch, "loss_grad", interrupted_at(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    messages = [str(w.message) for w in caught]
    assert "Training interrupted by user." in messages
    assert not any("diverged" in m for m in messages)
    assert clf.n_iter_ == 0
    monkeypatch.undo()
    # loss_ is the objective at the weights kept: the starting point's.
    np.testing.assert_allclose(clf.loss_, clf.loss_gradient(X, y)[0], rtol=1e-12)
    assert np.isfinite(clf.predict_proba(X)).all()


def test_convergence_warning_texts():
    X, y = _targets("multiclass")
    msg = (
        "Stochastic Optimizer: Maximum iterations (2) reached and the "
        "optimization hasn't converged yet."
    )
    with pytest.warns(ConvergenceWarning, match=re.escape(msg)):
        MLPClassifier((5,), max_iter=2, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"lbfgs failed to converge after 2"):
        MLPClassifier((5,), max_iter=2, solver="lbfgs", random_state=0).fit(X, y)


def test_verbose_prints_epochs_and_lbfgs_iterations(capsys):
    X, y = _targets("multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier((5,), max_iter=2, verbose=True, random_state=0).fit(X, y)
        assert "Iteration 2, loss = " in capsys.readouterr().out
        MLPClassifier((5,), max_iter=3, solver="lbfgs", verbose=True).fit(X, y)
        assert "Iteration 3, loss = " in capsys.readouterr().out


# ---------------------------------------------------------------------------
# bad input

BAD_X = [
    (np.array([[np.nan, 1.0]] * 4), "NaN"),
    (np.array([[np.inf, 1.0]] * 4), "infinity"),
    (np.zeros((0, 2)), "0 sample"),
    (np.zeros((4, 2, 2)), "dim 3"),
    (np.array([[1 + 1j, 1.0]] * 4), "[Cc]omplex"),
    (np.array([["a", "b"]] * 4, dtype=object), "could not convert|dtype='numeric'"),
]


@pytest.mark.parametrize("X, match", BAD_X)
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_bad_X_raises(cls, X, match):
    y = np.array([0, 1, 0, 1])[: len(X)]
    with pytest.raises(ValueError, match=match):
        cls(max_iter=2).fit(X, y)


def test_bad_y_and_predict_input_raise():
    X, y = _targets("multiclass")
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier(max_iter=2).fit(X, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        MLPRegressor(max_iter=2).fit(X, np.full(len(X), np.nan))
    clf = MLPClassifier((4,), max_iter=2)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.full_like(X, np.nan))
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MLPClassifier(max_iter=2).fit(sp.csr_matrix(X_nan), y)
    with pytest.raises(ValueError, match="classes must be passed on the first"):
        MLPClassifier().partial_fit(X, y)
    pf = MLPClassifier((4,)).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="classes not in"):
        pf.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="sample_weight.shape"):
        MLPClassifier(max_iter=2).fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="Negative values"):
        MLPClassifier(max_iter=2).fit(X, y, sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError, match="at least one non-zero"):
        MLPClassifier(max_iter=2).fit(X, y, sample_weight=np.zeros(len(X)))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden_layer_sizes": (5, 0)}, "hidden_layer_sizes must be > 0"),
        ({"hidden_layer_sizes": -3}, "'hidden_layer_sizes' parameter"),
        ({"activation": "softmax"}, "'activation' parameter"),
        ({"solver": "newton-cg"}, "'solver' parameter"),
        ({"alpha": -1.0}, "'alpha' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter"),
        ({"learning_rate": "cyclic"}, "'learning_rate' parameter"),
        ({"learning_rate_init": 0.0}, "'learning_rate_init' parameter"),
        ({"max_iter": 0}, "'max_iter' parameter"),
        ({"momentum": 1.5}, "'momentum' parameter"),
        ({"validation_fraction": 1.0}, "'validation_fraction' parameter"),
        ({"beta_1": 1.0}, "'beta_1' parameter"),
        ({"epsilon": 0.0}, "'epsilon' parameter"),
        ({"n_iter_no_change": 0}, "'n_iter_no_change' parameter"),
        ({"shuffle": "yes"}, "'shuffle' parameter"),
        ({"backend": "torch"}, "'backend' parameter"),
        ({"max_fun": 1.5}, "'max_fun' parameter"),
    ],
)
def test_invalid_parameters_raise(params, match):
    X, y = _targets("multiclass")
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match="'loss' parameter"):
        MLPRegressor(loss="pinball").fit(X, y)


def test_awkward_but_valid_inputs_work():
    pd = pytest.importorskip("pandas")
    X, y = _targets("multiclass")
    reference = MLPClassifier((5,), random_state=0, max_iter=3).fit(X, y)
    expected = reference.predict_proba(X)
    for Xv in (np.asfortranarray(X), np.repeat(X, 2, axis=1)[:, ::2]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            got = MLPClassifier((5,), random_state=0, max_iter=3).fit(Xv, y)
        np.testing.assert_allclose(got.predict_proba(Xv), expected, rtol=1e-12)
    Xi = np.round(X * 3).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier((5,), random_state=0, max_iter=3).fit(Xi, y)
        b = sk.MLPClassifier((5,), random_state=0, max_iter=3).fit(Xi, y)
    _assert_same_model(a, b)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((5,), random_state=0, max_iter=3).fit(df, y)
    assert list(clf.feature_names_in_) == list(df.columns)
    np.testing.assert_allclose(clf.predict_proba(df), expected, rtol=1e-12)


def test_pipeline_gridsearch_and_sample_weight_routing():
    X, y = _targets("multiclass")
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=20, random_state=0))
    search = GridSearchCV(
        pipe,
        {"mlpclassifier__hidden_layer_sizes": [(4,), (8,)],
         "mlpclassifier__solver": ["adam", "lbfgs"]},
        cv=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert search.best_score_ > 0.5

    sample_weight = np.random.RandomState(0).uniform(0.5, 2, len(X))
    with sklearn.config_context(enable_metadata_routing=True):
        routed = make_pipeline(
            StandardScaler().set_fit_request(sample_weight=False),
            MLPClassifier((5,), random_state=0, max_iter=3).set_fit_request(
                sample_weight=True
            ),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            routed.fit(X, y, sample_weight=sample_weight)
            direct = MLPClassifier((5,), random_state=0, max_iter=3).fit(
                StandardScaler().fit_transform(X), y, sample_weight=sample_weight
            )
    np.testing.assert_allclose(routed[-1].coefs_[0], direct.coefs_[0])


def test_predict_proba_and_log_proba_shapes():
    X, y = _targets("binary")
    clf = MLPClassifier((5,), random_state=0, max_iter=3).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    assert set(clf.predict(X)) <= {"yes", "no"}
    assert list(clf.classes_) == ["no", "yes"]


@pytest.mark.parametrize("labels", [[0, 1], [3, 5, 9], ["a", "b"], ["x", "y", "zz"],
                                    [0.0, 2.0, 7.0], [-2, 4]])
def test_known_labels_are_encoded_as_label_binarizer_does(labels):
    # partial_fit's shortcut past LabelBinarizer.transform gives its output,
    # and declines (None) whenever a label is not a fitted one.
    from sklearn.preprocessing import LabelBinarizer

    from fastbp._mlp import _known_labels_encoded

    fitted = np.array(labels)
    binarizer = LabelBinarizer().fit(fitted)
    y = np.random.RandomState(0).choice(fitted, 50)
    Y = binarizer.transform(y)
    got = _known_labels_encoded(y, binarizer, binarizer.classes_)
    np.testing.assert_array_equal(got, Y.reshape(len(y), -1))
    assert got.dtype == Y.dtype
    unseen = np.r_[y[:5], np.array(["new"] if fitted.dtype.kind == "U" else [99])]
    assert _known_labels_encoded(unseen.astype(y.dtype), binarizer,
                                 binarizer.classes_) is None
    assert _known_labels_encoded(y.astype(object), binarizer, binarizer.classes_) is None
