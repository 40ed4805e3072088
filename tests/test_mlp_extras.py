"""Estimator features beyond scikit-learn: activations, transform, L1,
class_weight, early-stopping controls."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from conftest import make_classification_data, make_regression_data
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import fastbp
from fastbp import MLPClassifier, MLPRegressor
from fastbp._families import HIDDEN_ACTIVATIONS, SKLEARN_ACTIVATIONS

# fastbp's own hidden activations, from the table: a new one is tested here.
NEW_ACTIVATIONS = [a for a in HIDDEN_ACTIVATIONS if a not in SKLEARN_ACTIVATIONS]


def _fit(est, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **fit_params)


# ---------------------------------------------------------------------------
# Activations


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize(
    "activation", NEW_ACTIVATIONS + [["gelu", "tanh"], ("relu", "silu")], ids=str
)
def test_new_and_per_layer_activations_fit_like_the_twin(activation, solver):
    X, y = make_classification_data(seed=1)
    # L-BFGS's line searches amplify rounding differences: fewer iterations.
    params = dict(hidden_layer_sizes=(6, 4), activation=activation, solver=solver,
                  learning_rate_init=0.02, random_state=0,
                  max_iter=40 if solver == "adam" else 5)
    ours = _fit(MLPClassifier(**params), X, y)
    twin = _fit(MLPClassifier(backend="numpy", **params), X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, twin.coefs_ + twin.intercepts_):
        assert_allclose(a, b, rtol=1e-7, atol=1e-10)
    assert_allclose(ours.loss_, twin.loss_, rtol=1e-9)
    if solver == "adam":
        assert ours.score(X, y) > 0.8  # it learns


def test_per_layer_list_of_one_name_equals_the_name():
    X, y = make_regression_data()
    one = _fit(MLPRegressor(hidden_layer_sizes=(5, 3), activation="logistic", max_iter=20,
                            random_state=0), X, y)
    per_layer = _fit(MLPRegressor(hidden_layer_sizes=(5, 3),
                                  activation=["logistic", "logistic"],
                                  max_iter=20, random_state=0), X, y)
    for a, b in zip(one.coefs_, per_layer.coefs_):
        np.testing.assert_array_equal(a, b)


def test_per_layer_activations_are_applied_per_layer():
    # Hand-built forward pass with each layer's own activation.
    X, y = make_regression_data()
    reg = _fit(MLPRegressor(hidden_layer_sizes=(5, 3), activation=["softsign", "elu"], max_iter=5,
                            random_state=0), X, y)
    (W1, W2, W3), (b1, b2, b3) = reg.coefs_, reg.intercepts_
    Z1 = X @ W1 + b1
    H1 = Z1 / (1 + np.abs(Z1))
    Z2 = H1 @ W2 + b2
    H2 = np.where(Z2 > 0, Z2, np.expm1(np.minimum(Z2, 0)))
    assert_allclose(reg.predict(X), (H2 @ W3 + b3).ravel(), rtol=1e-12)


@pytest.mark.parametrize(
    "activation, match",
    [
        ("swish", "'activation' parameter"),
        (["relu", "mish"], "'activation' parameter"),
        (["relu"], "one name per hidden layer"),
        (["relu", "tanh", "elu"], "one name per hidden layer"),
    ],
)
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_bad_activations_raise(cls, activation, match):
    X, y = make_classification_data()
    with pytest.raises(ValueError, match=match):
        cls(hidden_layer_sizes=(4, 3), activation=activation).fit(X, y)


# ---------------------------------------------------------------------------
# transform: the last hidden layer's activations


def _hidden_by_hand(est, X):
    A = X
    for W, b in zip(est.coefs_[:-1], est.intercepts_[:-1]):
        Z = A @ W + b
        A = {"relu": lambda Z: np.maximum(Z, 0), "tanh": np.tanh,
             "silu": lambda Z: Z / (1 + np.exp(-Z))}[est.activation](Z)
    return A


@pytest.mark.parametrize("activation", ["relu", "tanh", "silu"])
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_transform_is_last_hidden_layer(cls, activation):
    X, y = make_classification_data()
    est = _fit(cls(hidden_layer_sizes=(6, 4), activation=activation, max_iter=5,
                   random_state=0), X, y)
    H = est.transform(X)
    assert H.shape == (len(X), 4)
    assert_allclose(H, _hidden_by_hand(est, X), rtol=1e-12, atol=1e-14)
    assert_allclose(est.transform(sp.csr_matrix(X)), H, rtol=1e-12, atol=1e-14)
    H32 = est.transform(X.astype(np.float32))
    assert H32.dtype == np.float64  # the weights' dtype
    est32 = _fit(cls(hidden_layer_sizes=(3,), max_iter=5, random_state=0),
                 X.astype(np.float32), y)
    assert est32.transform(X).dtype == np.float32


def test_transform_feeds_a_pipeline_and_follows_set_output():
    pd = pytest.importorskip("pandas")
    X, y = make_classification_data(n_samples=90)
    pipe = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0),
        LogisticRegression(),
    )
    _fit(pipe, X, y)
    mlp = pipe[1]
    np.testing.assert_array_equal(pipe[:2].transform(X),
                                  mlp.transform(pipe[0].transform(X)))
    assert pipe.score(X, y) > 0.8
    mlp.set_output(transform="pandas")
    frame = mlp.transform(pipe[0].transform(X))
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [f"mlpclassifier{i}" for i in range(8)]
    assert list(mlp.get_feature_names_out()) == list(frame.columns)


def test_transform_errors():
    X, y = make_regression_data()
    with pytest.raises(NotFittedError):
        MLPRegressor().transform(X)
    reg = _fit(MLPRegressor(hidden_layer_sizes=(), max_iter=5), X, y)
    with pytest.raises(ValueError, match="no hidden layer"):
        reg.transform(X)
    reg = _fit(MLPRegressor(hidden_layer_sizes=(3,), max_iter=5), X, y)
    with pytest.raises(ValueError, match="features"):
        reg.transform(X[:, :2])


def test_transform_uses_each_layers_activation():
    X, y = make_regression_data()
    reg = _fit(MLPRegressor(hidden_layer_sizes=(4, 3), activation=["tanh", "softsign"],
                            max_iter=5, random_state=0), X, y)
    (W1, W2, _), (b1, b2, _) = reg.coefs_, reg.intercepts_
    Z = np.tanh(X @ W1 + b1) @ W2 + b2
    assert_allclose(reg.transform(X), Z / (1 + np.abs(Z)), rtol=1e-12)


# ---------------------------------------------------------------------------
# L1 penalty


def test_l1_gives_sparser_weights():
    X, y = make_classification_data(n_samples=150, n_features=10)
    params = dict(hidden_layer_sizes=(20,), solver="sgd", learning_rate_init=0.05,
                  max_iter=150, random_state=0)
    plain = _fit(MLPClassifier(**params), X, y)
    lasso = _fit(MLPClassifier(l1=2.0, **params), X, y)

    def small(est):
        W = np.concatenate([c.ravel() for c in est.coefs_])
        return np.mean(np.abs(W) < 1e-2)

    assert small(lasso) > small(plain) + 0.2
    assert lasso.score(X, y) > 0.7


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_l1_is_in_the_reported_loss(alpha):
    # lbfgs's loss_ is the objective at the final weights: the data loss plus
    # alpha / (2 n) ||W||^2 + l1 / n ||W||_1.
    X, y = make_regression_data(n_samples=40)
    reg = _fit(MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", alpha=alpha,
                            l1=0.5, max_iter=30, random_state=0), X, y)
    n = len(X)
    data = 0.5 * np.mean((reg.predict(X) - y) ** 2)
    W = np.concatenate([c.ravel() for c in reg.coefs_])
    want = data + alpha / (2 * n) * W @ W + 0.5 / n * np.abs(W).sum()
    assert_allclose(reg.loss_, want, rtol=1e-9)


def test_l1_zero_is_the_default_trajectory():
    X, y = make_classification_data()
    a = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=10, random_state=0), X, y)
    b = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=10, random_state=0,
                           l1=0.0), X, y)
    for u, v in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("value", [-0.1, "big", None])
def test_bad_l1_raises(value):
    X, y = make_classification_data()
    with pytest.raises(ValueError, match="'l1' parameter"):
        MLPClassifier(l1=value).fit(X, y)


# ---------------------------------------------------------------------------
# class_weight


def _same_weights(a, b):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert_allclose(u, v, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_class_weight_equals_its_sample_weight(n_classes, solver):
    X, y = make_classification_data(n_samples=70, n_classes=n_classes)
    labels = np.array(["ant", "bee", "cat"])[y]
    params = dict(hidden_layer_sizes=(5,), solver=solver, max_iter=10,
                  random_state=0)
    sw = np.random.RandomState(1).uniform(0.5, 2, len(y))
    weights = {"ant": 3.0, "bee": 0.5}  # cat: 1
    by_hand = np.array([weights.get(c, 1.0) for c in labels])
    counts = np.bincount(y)
    balanced = len(y) / (n_classes * counts[y])
    for class_weight, per_sample in [(weights, by_hand), ("balanced", balanced)]:
        ours = _fit(MLPClassifier(class_weight=class_weight, **params), X, labels,
                    sample_weight=sw)
        want = _fit(MLPClassifier(**params), X, labels,
                    sample_weight=sw * per_sample)
        _same_weights(ours, want)


def test_class_weight_with_early_stopping_and_partial_fit():
    X, y = make_classification_data(n_samples=80)
    weights = {0: 2.0, 2: 0.25}
    per_sample = np.array([weights.get(c, 1.0) for c in y])
    params = dict(hidden_layer_sizes=(5,), max_iter=8, random_state=0,
                  early_stopping=True)
    _same_weights(_fit(MLPClassifier(class_weight=weights, **params), X, y),
                  _fit(MLPClassifier(**params), X, y, sample_weight=per_sample))
    ours = MLPClassifier(hidden_layer_sizes=(5,), random_state=0,
                         class_weight=weights)
    want = MLPClassifier(hidden_layer_sizes=(5,), random_state=0)
    for part in (slice(0, 40), slice(40, 80)):
        ours.partial_fit(X[part], y[part], classes=[0, 1, 2])
        want.partial_fit(X[part], y[part], sample_weight=per_sample[part],
                         classes=[0, 1, 2])
    _same_weights(ours, want)


def test_class_weight_errors():
    X, y = make_classification_data()
    with pytest.raises(ValueError, match="not in class"):
        MLPClassifier(class_weight={0: 1.0, 7: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="'class_weight' parameter"):
        MLPClassifier(class_weight="uniform").fit(X, y)
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier(class_weight="balanced").fit(X, np.c_[y == 0, y == 1])
    with pytest.raises(ValueError, match="partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="at least one non-zero"):
        MLPClassifier(class_weight={0: 0, 1: 0, 2: 0}).fit(X, y)
    assert "class_weight" not in MLPRegressor().get_params()


# ---------------------------------------------------------------------------
# Early-stopping controls: validation loss, metric, user validation set,
# restoring the best weights on the training loss


def _split(X, y, n_val=30):
    return X[:-n_val], y[:-n_val], X[-n_val:], y[-n_val:]


def test_validation_loss_curve_is_the_validation_loss():
    X, y = make_classification_data(n_samples=120)
    X_tr, y_tr, X_val, y_val = _split(X, y)
    sw_val = np.random.RandomState(0).uniform(0.5, 2, len(y_val))
    clf = _fit(MLPClassifier(hidden_layer_sizes=(6,), early_stopping=True,
                             max_iter=1, random_state=0), X_tr, y_tr,
               X_val=X_val, y_val=y_val, sample_weight_val=sw_val)
    # One epoch: the kept weights are that epoch's; its validation loss is
    # the weighted log-loss of predict_proba (data term only).
    assert_allclose(clf.validation_loss_curve_,
                    [log_loss(y_val, clf.predict_proba(X_val), sample_weight=sw_val)],
                    rtol=1e-10)
    assert_allclose(clf.validation_scores_,
                    [clf.score(X_val, y_val, sample_weight=sw_val)])
    reg = _fit(MLPRegressor(hidden_layer_sizes=(6,), early_stopping=True,
                            max_iter=1, random_state=0), X_tr, X_tr[:, 0],
               X_val=X_val, y_val=X_val[:, 0])
    half_mse = 0.5 * np.mean((reg.predict(X_val) - X_val[:, 0]) ** 2)
    assert_allclose(reg.validation_loss_curve_, [half_mse], rtol=1e-10)
    # Recorded every epoch with the held-out split too; None without one.
    clf = _fit(MLPClassifier(hidden_layer_sizes=(6,), early_stopping=True,
                             max_iter=15, n_iter_no_change=100, random_state=0),
               X, y)
    assert len(clf.validation_loss_curve_) == clf.n_iter_ == 15
    assert clf.best_validation_loss_ == min(clf.validation_loss_curve_)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(6,), max_iter=3), X, y)
    assert clf.validation_loss_curve_ is None and clf.best_validation_loss_ is None


def _stop_epoch(curve, tol, patience):
    """Epochs run by scikit-learn's rule applied to a curve to minimise."""
    best, count = np.inf, 0
    for epoch, value in enumerate(curve, 1):
        count = count + 1 if value > best - tol else 0
        best = min(best, value)
        if count > patience:
            return epoch
    return len(curve)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_early_stopping_on_validation_loss(backend):
    X, y = make_classification_data(n_samples=150)
    X_tr, y_tr, X_val, y_val = _split(X, y, 50)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(20,), early_stopping=True,
                             early_stopping_metric="loss", learning_rate_init=0.05,
                             n_iter_no_change=3, max_iter=200, random_state=0,
                             backend=backend),
               X_tr, y_tr, X_val=X_val, y_val=y_val)
    curve = clf.validation_loss_curve_
    assert clf.n_iter_ < 200  # it overfits, then stops
    assert clf.n_iter_ == _stop_epoch(curve, clf.tol, 3) == len(curve)
    # The kept weights are those of the lowest validation loss.
    assert_allclose(log_loss(y_val, clf.predict_proba(X_val)), min(curve),
                    rtol=1e-10)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # The score metric (the default) stops on the score instead.
    by_score = _fit(clf.set_params(early_stopping_metric="score"), X_tr, y_tr,
                    X_val=X_val, y_val=y_val)
    assert by_score.n_iter_ == _stop_epoch(-np.array(by_score.validation_scores_),
                                           by_score.tol, 3)


def test_user_validation_set_replaces_the_split():
    X, y = make_classification_data(n_samples=120)
    X_tr, y_tr, X_val, y_val = _split(X, y)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(6,), early_stopping=True,
                             max_iter=5, n_iter_no_change=100, random_state=0),
               X_tr, y_tr, X_val=X_val, y_val=y_val)
    assert clf.t_ == 5 * len(X_tr)  # every training sample trains
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert_allclose(clf.score(X_val, y_val), clf.best_validation_score_)


def test_user_validation_set_errors():
    X, y = make_classification_data()
    X_tr, y_tr, X_val, y_val = _split(X, y)
    clf = MLPClassifier(hidden_layer_sizes=(3,), early_stopping=True, max_iter=2)
    with pytest.raises(ValueError, match="early_stopping is False"):
        MLPClassifier(max_iter=2).fit(X_tr, y_tr, X_val=X_val, y_val=y_val)
    with pytest.raises(ValueError, match="not stochastic"):
        MLPClassifier(solver="lbfgs", early_stopping=True).fit(
            X_tr, y_tr, X_val=X_val, y_val=y_val)
    with pytest.raises(ValueError, match="together"):
        clf.fit(X_tr, y_tr, X_val=X_val)
    with pytest.raises(ValueError, match="without X_val"):
        clf.fit(X_tr, y_tr, sample_weight_val=np.ones(len(y_val)))
    with pytest.raises(ValueError, match="classes not in"):
        clf.fit(X_tr, y_tr, X_val=X_val, y_val=y_val + 5)
    with pytest.raises(ValueError, match="features"):
        clf.fit(X_tr, y_tr, X_val=X_val[:, :2], y_val=y_val)
    with pytest.raises(ValueError, match="y_val must have shape"):
        clf.fit(X_tr, y_tr, X_val=X_val, y_val=y_val[:3])
    with pytest.raises(ValueError, match="'early_stopping_metric' parameter"):
        MLPClassifier(early_stopping_metric="accuracy").fit(X, y)
    with pytest.raises(ValueError, match="'restore_best_weights' parameter"):
        MLPClassifier(restore_best_weights=1).fit(X, y)


def test_validation_set_routes_through_a_pipeline():
    X, y = make_classification_data(n_samples=120)
    X_tr, y_tr, X_val, y_val = _split(X, y)
    params = dict(hidden_layer_sizes=(6,), early_stopping=True, max_iter=8,
                  random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        mlp = MLPClassifier(**params).set_fit_request(X_val=True, y_val=True)
        pipe = Pipeline([("scale", StandardScaler()), ("mlp", mlp)],
                        transform_input=["X_val"])
        _fit(pipe, X_tr, y_tr, X_val=X_val, y_val=y_val)
    scaler = StandardScaler().fit(X_tr)
    direct = _fit(MLPClassifier(**params), scaler.transform(X_tr), y_tr,
                  X_val=scaler.transform(X_val), y_val=y_val)
    _same_weights(pipe[-1], direct)
    assert_allclose(pipe[-1].validation_scores_, direct.validation_scores_)


def test_restore_best_weights_on_the_training_loss():
    X, y = make_classification_data(n_samples=100)
    # A learning rate that makes the training loss rise: stop at epoch 10,
    # lowest loss at the end of epoch 4.
    params = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=2.0,
                  batch_size=20, n_iter_no_change=5, tol=0.0, random_state=0)
    clf = _fit(MLPClassifier(restore_best_weights=True, max_iter=30, **params),
               X, y)
    best = int(np.argmin(clf.loss_curve_))
    assert 0 < best < clf.n_iter_ - 1
    # The same seed replays the same first epochs: stop after best + 1.
    at_best = _fit(MLPClassifier(max_iter=best + 1, **params), X, y)
    _same_weights(clf, at_best)
    plain = _fit(MLPClassifier(max_iter=30, **params), X, y)
    assert plain.n_iter_ == clf.n_iter_
    assert not np.allclose(plain.coefs_[0], clf.coefs_[0])
    # partial_fit is untouched (one epoch per call).
    a = MLPClassifier(restore_best_weights=True, **params).partial_fit(
        X, y, classes=[0, 1, 2])
    b = MLPClassifier(**params).partial_fit(X, y, classes=[0, 1, 2])
    _same_weights(a, b)


# ---------------------------------------------------------------------------
# Dropout


@pytest.mark.parametrize("dropout", [0.3, [0.5, 0.0]], ids=str)
def test_dropout_fits_like_the_twin_and_is_reproducible(dropout):
    X, y = make_classification_data(n_samples=90)
    params = dict(hidden_layer_sizes=(12, 6), dropout=dropout, max_iter=10,
                  learning_rate_init=0.01, random_state=0)
    ours = _fit(MLPClassifier(**params), X, y)
    _same_weights(ours, _fit(MLPClassifier(**params), X, y))  # same seed
    twin = _fit(MLPClassifier(backend="numpy", **params), X, y)
    for a, b in zip(ours.coefs_, twin.coefs_):
        assert_allclose(a, b, rtol=1e-8, atol=1e-11)
    plain = _fit(MLPClassifier(**dict(params, dropout=0.0)), X, y)
    assert not np.allclose(ours.coefs_[0], plain.coefs_[0])
    other = _fit(MLPClassifier(**dict(params, random_state=1)), X, y)
    assert not np.allclose(ours.coefs_[0], other.coefs_[0])


def test_dropout_is_off_at_predict():
    X, y = make_classification_data()
    clf = _fit(MLPClassifier(hidden_layer_sizes=(8,), dropout=0.5, max_iter=5,
                             random_state=0), X, y)
    H = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0)
    Z = H @ clf.coefs_[1] + clf.intercepts_[1]
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    assert_allclose(clf.predict_proba(X), P / P.sum(axis=1, keepdims=True),
                    rtol=1e-10)
    np.testing.assert_array_equal(clf.transform(X), clf.transform(X))


def test_dropout_errors():
    X, y = make_classification_data()
    for bad in (1.0, -0.1, [0.2, 1.5], "half"):
        with pytest.raises(ValueError, match="'dropout' parameter"):
            MLPClassifier(hidden_layer_sizes=(4, 3), dropout=bad).fit(X, y)
    with pytest.raises(ValueError, match="one rate per hidden layer"):
        MLPClassifier(hidden_layer_sizes=(4, 3), dropout=[0.2]).fit(X, y)
    with pytest.raises(ValueError, match="stochastic solver"):
        MLPRegressor(solver="lbfgs", dropout=0.2).fit(X, y)


def test_grid_search_over_solver_activation_dropout_on_a_pipeline():
    X, y = make_classification_data(n_samples=90)
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier(hidden_layer_sizes=(8,), max_iter=30,
                                       random_state=0))
    grid = {"mlpclassifier__solver": ["sgd", "adam"],
            "mlpclassifier__activation": ["relu", "gelu", ["silu"]],
            "mlpclassifier__dropout": [0.0, 0.2]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 12
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_second_order_tools_take_every_activation_newton_refuses_l1_dropout():
    # Every hidden activation has second derivatives (tests/test_curvature.py,
    # tests/test_second_order.py check them); L1 has none at 0 and dropout
    # makes the objective random, so newton refuses both.
    X, y = make_classification_data()
    clf = _fit(MLPClassifier(solver="newton", activation=["gelu", "elu"],
                             hidden_layer_sizes=(3, 3), max_iter=5,
                             random_state=0), X, y)
    assert clf.n_iter_ >= 1 and np.isfinite(clf.loss_)
    with pytest.raises(ValueError, match="twice-differentiable.*l1=0"):
        MLPClassifier(solver="newton", l1=0.1, hidden_layer_sizes=(3,)).fit(X, y)
    with pytest.raises(ValueError, match="stochastic solver"):
        MLPClassifier(solver="newton", dropout=0.2,
                      hidden_layer_sizes=(3,)).fit(X, y)
    for backend in ("cython", "numpy"):
        clf = _fit(MLPClassifier(hidden_layer_sizes=(3,), activation="silu",
                                 max_iter=3, backend=backend), X, y)
        hv = clf.hessian_vector_product(X, y, np.ones(clf._fitted_model().flat.size))
        assert np.isfinite(hv).all()


def test_dropout_seeds_change_every_epoch_and_partial_fit(monkeypatch):
    from fastbp import _epoch

    seeds = []
    run_epoch = _epoch.run_epoch

    def spy(*args, **kwargs):
        seeds.append(kwargs["seed"])
        return run_epoch(*args, **kwargs)

    monkeypatch.setattr(_epoch, "run_epoch", spy)
    X, y = make_classification_data()
    _fit(MLPClassifier(hidden_layer_sizes=(4,), dropout=0.2, max_iter=4,
                       random_state=0), X, y)
    clf = MLPClassifier(hidden_layer_sizes=(4,), dropout=0.2, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2]).partial_fit(X, y)
    assert len(seeds) == 6 and len(set(seeds[:4])) == 4
    # A first partial_fit is a fit's first epoch; the next call draws anew.
    assert seeds[4] == seeds[0] and seeds[5] != seeds[4]
    assert all(0 <= s < 2**64 for s in seeds)
    seeds.clear()
    _fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0), X, y)
    assert seeds == [0, 0]  # no dropout: nothing drawn


def test_second_order_objective_includes_l1_and_class_weight():
    X, y = make_classification_data()
    weights = {0: 3.0, 2: 0.5}
    clf = _fit(MLPClassifier(hidden_layer_sizes=(4,), activation="tanh", alpha=0.1,
                             l1=0.2, class_weight=weights, max_iter=20,
                             random_state=0), X, y)
    loss, grad = clf.loss_gradient(X, y)
    cw = np.array([weights.get(c, 1.0) for c in y])
    W = np.concatenate([c.ravel() for c in clf.coefs_])
    want = (log_loss(y, clf.predict_proba(X), sample_weight=cw)
            + (0.05 * W @ W + 0.2 * np.abs(W).sum()) / cw.sum())
    assert_allclose(loss, want, rtol=1e-10)
    check = fastbp.check_gradients(clf, X, y)
    assert check.max_error < 1e-5
    assert_allclose(check.gradient, grad, rtol=1e-12)
