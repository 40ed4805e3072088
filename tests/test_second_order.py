"""Estimator-level second-order tools and the newton solver."""

import io
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression

import fastbp
from fastbp import MLPClassifier, MLPRegressor, _epoch, _reference, check_gradients
from fastbp._families import HIDDEN_ACTIVATIONS, SKLEARN_ACTIVATIONS
from fastbp._network import pack
from fastbp._state import Model

HIDDEN = list(SKLEARN_ACTIVATIONS)
NEW_HIDDEN = [a for a in HIDDEN_ACTIVATIONS if a not in SKLEARN_ACTIVATIONS]
MIXED = [["gelu", "relu"], ["silu", "softsign"], ["elu", "softplus"]]
# f' (relu, leaky_relu) or f'' (elu, softsign) jumps at 0.
KINKED = {"relu", "leaky_relu", "elu", "softsign"}
HEADS = ["multiclass", "binary", "multilabel", "regression", "multi-regression",
         "poisson", "absolute_error", "huber", "quantile", "multi-quantile",
         "gamma"]
# Zero curvature almost everywhere: newton refuses them.
PIECEWISE_LINEAR = {"absolute_error", "quantile", "multi-quantile"}
NEWTON_HEADS = [h for h in HEADS if h not in PIECEWISE_LINEAR]
N, F = 24, 4


def _data(head, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(N, F)
    score = X @ rng.randn(F, 3)
    if head == "multiclass":
        return MLPClassifier, {}, X, np.argmax(score + rng.randn(N, 3), axis=1)
    if head == "binary":
        return MLPClassifier, {}, X, (score[:, 0] + rng.randn(N) > 0).astype(int)
    if head == "multilabel":
        return MLPClassifier, {}, X, (score[:, :2] + rng.randn(N, 2) > 0).astype(int)
    if head == "regression":
        return MLPRegressor, {}, X, np.tanh(score[:, 0])
    if head == "multi-regression":
        return MLPRegressor, {}, X, np.tanh(score)
    if head == "absolute_error":
        return MLPRegressor, {"loss": "absolute_error"}, X, np.tanh(score[:, 0])
    if head == "huber":
        # delta 0.3: residuals on both sides of it
        return (MLPRegressor, {"loss": "huber", "huber_delta": 0.3}, X,
                2 * np.tanh(score[:, 0]))
    if head == "quantile":
        return (MLPRegressor, {"loss": "quantile", "quantile": 0.8}, X,
                np.tanh(score[:, 0]))
    if head == "multi-quantile":
        return MLPRegressor, {"loss": "quantile", "quantile": 0.3}, X, np.tanh(score)
    if head == "gamma":
        return (MLPRegressor, {"loss": "gamma"}, X,
                rng.gamma(3.0, np.exp(0.3 * score[:, 0]) / 3))
    return MLPRegressor, {"loss": "poisson"}, X, rng.poisson(np.exp(0.3 * score[:, 0]))


def _fitted(head, activation="tanh", hidden=(4, 3), alpha=0.05, seed=0, **params):
    cls, extra, X, y = _data(head, seed)
    est = cls(hidden_layer_sizes=hidden, activation=activation, solver="lbfgs",
              alpha=alpha, max_iter=3, random_state=seed, **extra, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    if head in PIECEWISE_LINEAR:
        # Minimizing a piecewise-linear loss interpolates some samples
        # (p = y exactly), where the loss has a kink: step off them, for
        # the finite differences.
        est.intercepts_[-1] += 0.01
        assert np.abs(est.predict(X).reshape(y.shape) - y).min() > 1e-4
    return est, X, y


def _weights(seed=0):
    return np.random.RandomState(seed + 10).uniform(0.2, 3.0, N)


def _set_flat(est, flat):
    est.__dict__.update(Model(flat, est._fitted_model().units).attributes())


def _flat(est):
    return pack(est.coefs_, est.intercepts_, np.float64)


def _away_from_kinks(est, X, margin=1e-4):
    """Finite differences need hidden pre-activations away from the kinks."""
    activations = est.activation
    if isinstance(activations, str):
        activations = [activations] * (len(est.coefs_) - 1)
    coefs, intercepts = est.coefs_[:-1], est.intercepts_[:-1]
    plan = est._network().plan(est._fitted_model().units, X.shape[0])
    pre = _reference._forward_layers(plan, X, est.coefs_, est.intercepts_)[1]
    assert len(coefs) == len(intercepts) == len(activations)
    for name, Z in zip(activations, pre[1:]):
        if name in KINKED:
            assert np.abs(Z).min() > margin


CASES = [(act, head) for act in HIDDEN + NEW_HIDDEN + MIXED for head in HEADS]


# ---------------------------------------------------------------------------
# derivatives against central differences (float64)


@pytest.mark.parametrize("weighted, alpha", [(False, 0.0), (True, 0.3)])
@pytest.mark.parametrize("activation, head", CASES, ids=str)
def test_gradient_hvp_hessian_match_differences(activation, head, weighted, alpha):
    est, X, y = _fitted(head, activation, alpha=alpha)
    _away_from_kinks(est, X)
    sw = _weights() if weighted else None
    w0 = _flat(est)
    loss, grad = est.loss_gradient(X, y, sample_weight=sw)
    assert grad.shape == w0.shape and np.abs(grad).max() > 1e-4

    def at(w, what):
        _set_flat(est, w)
        try:
            return est.loss_gradient(X, y, sample_weight=sw)[what]
        finally:
            _set_flat(est, w0.copy())

    h = 1e-6
    numeric = np.array([
        (at(w0 + h * e, 0) - at(w0 - h * e, 0)) / (2 * h) for e in np.eye(w0.size)
    ])
    assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)

    H = est.hessian(X, y, sample_weight=sw)
    assert H.shape == (w0.size, w0.size)
    assert_allclose(H, H.T, rtol=1e-10, atol=1e-12)
    v = np.random.RandomState(1).randn(w0.size)
    hv = est.hessian_vector_product(X, y, v, sample_weight=sw)
    assert_allclose(hv, H @ v, rtol=1e-10, atol=1e-12)
    h = 1e-5
    numeric_hv = (at(w0 + h * v, 1) - at(w0 - h * v, 1)) / (2 * h)
    assert_allclose(hv, numeric_hv, rtol=1e-6, atol=1e-8)

    est.set_params(backend="numpy")
    assert_allclose(est.loss_gradient(X, y, sample_weight=sw)[1], grad, rtol=1e-12,
                    atol=1e-14)
    assert_allclose(est.hessian_vector_product(X, y, v, sample_weight=sw), hv,
                    rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("activation, head", CASES, ids=str)
def test_jacobian_matches_differences(activation, head):
    est, X, _ = _fitted(head, activation)
    _away_from_kinks(est, X)
    output = est.predict_proba if head in HEADS[:3] else est.predict
    J = est.jacobian(X)
    n_out = output(X).reshape(N, -1).shape[1]
    assert J.shape == (N, n_out, F)
    h = 1e-6
    for j in range(F):
        e = np.zeros(F)
        e[j] = h
        numeric = (output(X + e) - output(X - e)).reshape(N, -1) / (2 * h)
        assert_allclose(J[:, :, j], numeric, rtol=1e-6, atol=1e-9)
    assert_allclose(est.set_params(backend="numpy").jacobian(X), J, rtol=1e-12,
                    atol=1e-15)


def test_jacobian_sparse_float32_and_chunks():
    est, X, _ = _fitted("multiclass", "tanh")
    J = est.jacobian(X)
    assert_allclose(est.jacobian(sp.csr_matrix(X)), J, rtol=1e-12, atol=1e-15)
    big = np.tile(X, (50, 1))  # more rows than one pass holds
    assert_allclose(est.jacobian(big), np.tile(J, (50, 1, 1)), rtol=1e-12,
                    atol=1e-15)
    cls, extra, X, y = _data("multiclass")
    est32 = MLPClassifier((4,), solver="lbfgs", max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est32.fit(X.astype(np.float32), y)
    assert est32.jacobian(X).dtype == np.float32
    assert est32.hessian(X, y).dtype == np.float32


def test_loss_gradient_loss_is_the_reported_loss():
    est, X, y = _fitted("multiclass")
    assert_allclose(est.loss_gradient(X, y)[0], est.loss_, rtol=1e-12)
    # Multi-output squared error: the objective sums the outputs' terms.
    est, X, y = _fitted("multi-regression", alpha=0.2)
    l2 = 0.5 * 0.2 * sum((W**2).sum() for W in est.coefs_) / N
    assert_allclose(est.loss_gradient(X, y)[0], 3 * (est.loss_ - l2) + l2,
                    rtol=1e-12)


def test_unflatten_params():
    est, X, y = _fitted("multiclass")
    coefs, intercepts = est.unflatten_params(est.loss_gradient(X, y)[1])
    assert [c.shape for c in coefs] == [c.shape for c in est.coefs_]
    assert [b.shape for b in intercepts] == [b.shape for b in est.intercepts_]
    flat = np.arange(_flat(est).size, dtype=float)
    coefs, intercepts = est.unflatten_params(flat)
    assert coefs[0][0, 1] == 1 and intercepts[-1][-1] == flat[-1]
    with pytest.raises(ValueError, match="vector must have shape"):
        est.unflatten_params(flat[1:])


# ---------------------------------------------------------------------------
# check_gradients


@pytest.mark.parametrize("head", HEADS)
def test_check_gradients_small_errors(head):
    est, X, y = _fitted(head, "logistic")
    result = check_gradients(est, X, y, sample_weight=_weights())
    assert isinstance(result, fastbp.GradientCheck)
    assert len(result.coefs_errors) == len(result.intercepts_errors) == 3
    assert result.max_error < 1e-4
    assert "worst" in str(result)
    assert_allclose(result.gradient, result.numerical, rtol=1e-5, atol=1e-8)


def test_check_gradients_detects_a_wrong_gradient(monkeypatch):
    est, X, y = _fitted("multiclass", "tanh")
    units = est._fitted_model().units
    right = _epoch.loss_grad

    def wrong(plan, X, csr, Y, sw, params, grad, work, alpha, *rest):
        loss = right(plan, X, csr, Y, sw, params, grad, work, alpha, *rest)
        est.unflatten_params(grad)[0][1] *= 1.05  # layer 1's coefficients
        return loss

    monkeypatch.setattr(_epoch, "loss_grad", wrong)
    result = check_gradients(est, X, y)
    assert len(units) == 4
    assert result.coefs_errors[1] > 0.04
    assert result.coefs_errors[0] < 1e-4 and result.coefs_errors[2] < 1e-4
    assert max(result.intercepts_errors) < 1e-4


def test_check_gradients_float32_model_runs_in_float64():
    cls, extra, X, y = _data("binary")
    est = MLPClassifier((3,), activation="tanh", solver="lbfgs", max_iter=3,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X.astype(np.float32), y)
    result = check_gradients(est, X, y)
    assert result.gradient.dtype == np.float64 and result.max_error < 1e-4


# ---------------------------------------------------------------------------
# newton


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("head", ["binary", "multiclass"])
def test_newton_without_hidden_layer_is_logistic_regression(head, weighted):
    # MLP objective: sum_i w_i l_i / S + alpha / (2 S) ||W||^2; times S it is
    # LogisticRegression's sum_i w_i l_i + ||W||^2 / (2 C) with C = 1 / alpha.
    _, _, X, y = _data(head, seed=3)
    sw = _weights(3) if weighted else None
    alpha = 0.7
    est = MLPClassifier(hidden_layer_sizes=(), solver="newton", alpha=alpha,
                        tol=1e-8, max_iter=50, random_state=0)
    est.fit(X, y, sample_weight=sw)
    ref = LogisticRegression(C=1 / alpha, tol=1e-12, max_iter=10000)
    ref.fit(X, y, sample_weight=sw)
    assert est.n_iter_ < 20
    assert_allclose(est.coefs_[0], ref.coef_.T, rtol=1e-6, atol=1e-7)
    b, b_ref = est.intercepts_[0], ref.intercept_
    if head == "multiclass":  # softmax intercepts are defined up to a constant
        b, b_ref = b - b.mean(), b_ref - b_ref.mean()
    assert_allclose(b, b_ref, rtol=1e-6, atol=1e-7)
    assert_allclose(est.predict_proba(X), ref.predict_proba(X), atol=1e-7)


@pytest.mark.parametrize("head", NEWTON_HEADS)
def test_newton_converges_and_records(head):
    cls, extra, X, y = _data(head)
    est = cls(hidden_layer_sizes=(3,), activation="tanh", solver="newton",
              alpha=0.1, tol=1e-7, max_iter=200, random_state=0, **extra)
    out = io.StringIO()
    with redirect_stdout(out):
        est.set_params(verbose=True).fit(X, y)
    assert 1 <= est.n_iter_ < 200
    assert len(est.loss_curve_) == est.n_iter_
    assert out.getvalue().count("Iteration") == est.n_iter_
    assert_allclose(est.loss_curve_[-1], est.loss_, rtol=1e-12)
    # loss_ follows the estimators' convention (mean over squared-error outputs).
    problem, flat = est._objective(X, y, None)
    reported = _reference.loss_grad(problem.plan, problem.X, problem.csr,
                                    problem.Y, None, flat, np.empty_like(flat),
                                    None, est.alpha)
    assert_allclose(est.loss_, reported, rtol=1e-10)
    grad = est.loss_gradient(X, y)[1]
    assert np.linalg.norm(grad) < 1e-7
    # warm start from the optimum: nothing left to do.
    est.set_params(warm_start=True, verbose=False).fit(X, y)
    assert est.n_iter_ <= 1


SMOOTH = ["elu", "gelu", "softplus", "silu", "softsign", ["silu", "softsign"],
          ["elu", "gelu"]]


@pytest.mark.parametrize("activation", SMOOTH + ["leaky_relu", ["gelu", "relu"]],
                         ids=str)
def test_newton_takes_every_activation(activation):
    _, _, X, y = _data("multiclass")
    hidden = (3,) if isinstance(activation, str) else (3, 3)
    est = MLPClassifier(hidden_layer_sizes=hidden, activation=activation,
                        solver="newton", alpha=0.1, tol=1e-7, max_iter=200,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert np.all(np.diff(est.loss_curve_) <= 0)  # trust region: descent
    assert est.loss_ < 0.5 * est.loss_curve_[0]
    if activation in SMOOTH:
        # Twice differentiable (ELU and softsign away from 0): converges.
        assert 1 <= est.n_iter_ < 200
        assert np.linalg.norm(est.loss_gradient(X, y)[1]) < 1e-7
    # (Leaky) ReLU objectives are piecewise quadratic at best: trust-ncg may
    # stop on "a bad approximation" at a kink, as with relu.


def test_newton_respects_max_iter_and_beats_lbfgs_per_iteration():
    _, _, X, y = _data("multiclass")
    params = {"hidden_layer_sizes": (5,), "activation": "tanh", "alpha": 1e-3,
              "max_iter": 15, "random_state": 0, "tol": 0.0}
    with pytest.warns(ConvergenceWarning, match="newton failed to converge"):
        newton = MLPClassifier(solver="newton", **params).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        lbfgs = MLPClassifier(solver="lbfgs", **params).fit(X, y)
    assert newton.n_iter_ == lbfgs.n_iter_ == 15
    assert newton.loss_ < lbfgs.loss_


def test_newton_float32_sparse_and_numpy_backend():
    _, _, X, y = _data("binary")
    params = {"hidden_layer_sizes": (3,), "solver": "newton", "max_iter": 50,
              "tol": 1e-8, "alpha": 0.1, "random_state": 0,
              "activation": "logistic"}
    dense = MLPClassifier(**params).fit(X, y)
    sparse = MLPClassifier(**params).fit(sp.csr_matrix(X), y)
    twin = MLPClassifier(backend="numpy", **params).fit(X, y)
    for other in (sparse, twin):
        assert_allclose(_flat(other), _flat(dense), rtol=1e-6, atol=1e-8)
    est32 = MLPClassifier(**{**params, "tol": 1e-3}).fit(X.astype(np.float32), y)
    assert est32.coefs_[0].dtype == np.float32
    assert est32.score(X, y) >= 0.8


@pytest.mark.parametrize("head", sorted(PIECEWISE_LINEAR))
def test_newton_refuses_losses_without_curvature(head):
    cls, extra, X, y = _data(head)
    with pytest.raises(ValueError, match="newton.*needs curvature.*zero"):
        cls(solver="newton", **extra).fit(X, y)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("head", ["regression", "huber", "absolute_error",
                                  "quantile", "gamma"])
def test_linear_model_hessian_by_hand(head, weighted):
    # Without hidden layers the Hessian is [X 1]^T diag(w c) [X 1] / S (plus
    # alpha / S on the coefficients), c the loss's curvature in the output:
    # 1 (squared error), 1 within huber_delta else 0 (Huber), 0 (absolute
    # error, pinball), y / p (gamma).
    est, X, y = _fitted(head, hidden=(), alpha=0.3)
    sw = _weights() if weighted else np.ones(N)
    Z = X @ est.coefs_[0][:, 0] + est.intercepts_[0][0]
    if head == "gamma":
        c = y / np.exp(Z)
    elif head == "huber":
        c = (np.abs(Z - y) <= 0.3).astype(float)
        assert 0 < c.sum() < N  # both pieces present
    elif head == "regression":
        c = np.ones(N)
    else:
        c = np.zeros(N)
    X1 = np.column_stack([X, np.ones(N)])
    want = X1.T @ (X1 * (sw * c)[:, None]) / sw.sum()
    want[:F, :F] += 0.3 / sw.sum() * np.eye(F)
    for backend in ("cython", "numpy"):
        est.set_params(backend=backend)
        H = est.hessian(X, y, sample_weight=sw if weighted else None)
        assert_allclose(H, want, rtol=1e-10, atol=1e-12)


def test_newton_has_no_partial_fit():
    est = MLPClassifier(solver="newton")
    assert not hasattr(est, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit"):
        MLPRegressor(solver="newton").partial_fit


def test_solver_rule_names_newton():
    X, y = _data("binary")[2:]
    with pytest.raises(ValueError, match="'newton'"):
        MLPClassifier(solver="newtom").fit(X, y)


# ---------------------------------------------------------------------------
# bad input


def test_unfitted_estimator_raises():
    X, y = _data("binary")[2:]
    est = MLPClassifier()
    for call in (lambda: est.loss_gradient(X, y), lambda: est.hessian(X, y),
                 lambda: est.hessian_vector_product(X, y, np.ones(3)),
                 lambda: est.jacobian(X), lambda: check_gradients(est, X, y),
                 lambda: est.unflatten_params(np.ones(3))):
        with pytest.raises(NotFittedError):
            call()


def test_bad_inputs_raise():
    est, X, y = _fitted("binary")
    n_params = _flat(est).size
    with pytest.raises(ValueError, match=rf"v must be a numeric vector of shape \({n_params},\)"):
        est.hessian_vector_product(X, y, np.ones(n_params + 1))
    with pytest.raises(ValueError, match="v must be finite"):
        est.hessian_vector_product(X, y, np.full(n_params, np.nan))
    with pytest.raises(ValueError, match="features"):
        est.loss_gradient(X[:, :2], y)
    with pytest.raises(ValueError, match="features"):
        est.jacobian(X[:, :2])
    with pytest.raises(ValueError, match="classes"):
        est.loss_gradient(X, y + 5)
    with pytest.raises(ValueError, match="sample_weight"):
        est.loss_gradient(X, y, sample_weight=np.ones(N + 1))
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="eps"):
            check_gradients(est, X, y, eps=bad)


def test_hessian_size_limit():
    _, _, X, y = _data("binary")
    est = MLPClassifier((fastbp.MAX_HESSIAN_PARAMS // 5,), solver="lbfgs",
                        max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    with pytest.raises(ValueError, match="MAX_HESSIAN_PARAMS=2000"):
        est.hessian(X, y)
    assert est.hessian_vector_product(X, y, np.ones(_flat(est).size)).shape == (
        _flat(est).size,)


def test_every_objective_pass_runs_with_blas_held(monkeypatch):
    """loss_gradient's, hessian_vector_product's and hessian's passes call
    the engine with BLAS held on one thread (their bits never depend on
    BLAS's threading, and no BLAS worker spins a second core)."""
    from fastbp import _curvature, _epoch, _pool

    depths = []
    for module, name in [(_epoch, "loss_grad"),
                         (_curvature, "hessian_vector_product")]:
        real = getattr(module, name)

        def spy(*args, _real=real):
            depths.append(_pool.blas_hold_depth())
            return _real(*args)

        monkeypatch.setattr(module, name, spy)
    rng = np.random.RandomState(0)
    X, y = rng.randn(200, 64), rng.randint(0, 2, 200)  # 200 x 64 x 16: not tiny
    est = MLPClassifier((16,), max_iter=2, random_state=0).fit(X, y)
    est.loss_gradient(X, y)
    n = sum(c.size + b.size for c, b in zip(est.coefs_, est.intercepts_))
    est.hessian_vector_product(X, y, np.ones(n))
    assert len(depths) >= 2 and all(d >= 1 for d in depths), depths
