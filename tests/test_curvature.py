"""Compiled Hessian-vector products and input Jacobians: twin and derivatives."""

import dataclasses

import numpy as np
import pytest
from conftest import RTOL
from numpy.testing import assert_allclose
from test_epoch import HEADS, HIDDEN, MIXED, NETS, NEW_HIDDEN, make_problem

from fastbp import _curvature, _epoch, _kernels, _reference
from fastbp._network import unpack

MODULES = {"cython": _curvature, "numpy": _reference}


def _hvp(module, problem, v, alpha=0.05, params=None):
    params = problem.params if params is None else params
    dtype = params.dtype
    out = np.full(problem.plan.n_params, np.nan, dtype=dtype)
    work = np.full(problem.plan.work_size, np.nan, dtype=dtype)
    rwork = np.full(problem.plan.work_size, np.nan, dtype=dtype)
    loss = module.hessian_vector_product(
        problem.plan, problem.X, problem.csr, problem.Y, problem.sw, params,
        v.astype(dtype), out, work, rwork, alpha,
    )
    return loss, out


def _grad(problem, params, alpha):
    grad = np.empty_like(params)
    work = np.empty(problem.plan.work_size, dtype=params.dtype)
    _epoch.loss_grad(problem.plan, problem.X, problem.csr, problem.Y, problem.sw,
                     params, grad, work, alpha)
    return grad


def _jacobian(module, problem, params=None, X=None):
    params = problem.params if params is None else params
    X = problem.X if X is None else X
    n = problem.n_samples if problem.csr is not None else X.shape[0]
    units = problem.plan.units
    out = np.full((n, units[-1], units[0]), np.nan, dtype=params.dtype)
    work = np.full(problem.plan.work_size, np.nan, dtype=params.dtype)
    module.jacobian(problem.plan, X, problem.csr, params, work, out)
    return out


def _problem(dtype=np.float64, hidden=(4, 3), hidden_act="tanh", head="softmax",
             sparse=False, weighted=True, n_out=None, seed=8, n_samples=9,
             max_rows=None):
    head = next(h for h in HEADS if h.startswith(head))
    return make_problem(dtype, hidden, hidden_act, head, n_samples=n_samples,
                        max_rows=max_rows or n_samples, gather=False, sparse=sparse,
                        weighted=weighted, n_out=n_out, seed=seed)


# Activations with a jump in f' (relu, leaky_relu) or in f'' (elu, softsign)
# at 0: finite differences need the hidden pre-activations away from it.
KINKED = {_kernels.ACTIVATIONS[a] for a in ("relu", "leaky_relu", "elu", "softsign")}


def _away_from_kinks(problem, margin=1e-4):
    acts = problem.plan.acts[:-1]
    if not KINKED & set(acts):
        return
    coefs, intercepts = unpack(problem.params, [int(u) for u in problem.plan.units])
    pre = _reference._forward_layers(problem.plan, problem.dense, coefs,
                                     intercepts)[1]
    for act, Z in zip(acts, pre[1:]):
        if act in KINKED:
            assert np.abs(Z).min() > margin


HEAD_NAMES = list(HEADS)  # output-loss: several losses share an output


# ---------------------------------------------------------------------------
# compiled == twin


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("head", HEAD_NAMES)
@pytest.mark.parametrize("hidden_act", HIDDEN)
@pytest.mark.parametrize("hidden", NETS + [()], ids=["1hidden", "2hidden", "0hidden"])
def test_hvp_matches_twin(dtype, hidden, hidden_act, head, sparse):
    problem = _problem(dtype, hidden, hidden_act, head, sparse=sparse, seed=3)
    v = np.random.RandomState(1).randn(problem.plan.n_params)
    got_loss, got = _hvp(_curvature, problem, v)
    want_loss, want = _hvp(_reference, problem, v)
    assert got.dtype == dtype
    assert np.isfinite(got).all()
    assert_allclose(got_loss, want_loss, rtol=RTOL[dtype])
    assert_allclose(got, want, rtol=RTOL[dtype], atol=10 * RTOL[dtype])


@pytest.mark.parametrize("max_rows", [1, 4, 9])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("head", HEAD_NAMES)
@pytest.mark.parametrize("hidden_act", HIDDEN)
def test_jacobian_matches_twin(dtype, hidden_act, head, sparse, max_rows):
    problem = _problem(dtype, (4, 3), hidden_act, head, sparse=sparse, seed=3,
                       max_rows=max_rows)
    got = _jacobian(_curvature, problem)
    want = _jacobian(_reference, problem)
    assert np.isfinite(got).all()
    assert_allclose(got, want, rtol=RTOL[dtype], atol=10 * RTOL[dtype])


# Beyond scikit-learn's four, and one activation per hidden layer (GELU and
# SiLU read the pre-activations the plan keeps).
NEW_CASES = NEW_HIDDEN + [MIXED, MIXED[::-1], ["silu", "softsign"],
                          ["elu", "gelu"], ["leaky_relu", "softplus"]]


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("head", HEAD_NAMES)
@pytest.mark.parametrize("hidden_act", NEW_CASES, ids=str)
def test_hvp_new_activations_match_twin(dtype, hidden_act, head, sparse):
    hidden = (4,) if isinstance(hidden_act, str) and sparse else (4, 3)
    problem = _problem(dtype, hidden, hidden_act, head, sparse=sparse, seed=3)
    v = np.random.RandomState(1).randn(problem.plan.n_params)
    got_loss, got = _hvp(_curvature, problem, v)
    want_loss, want = _hvp(_reference, problem, v)
    assert np.isfinite(got).all()
    assert_allclose(got_loss, want_loss, rtol=RTOL[dtype])
    assert_allclose(got, want, rtol=RTOL[dtype], atol=10 * RTOL[dtype])


@pytest.mark.parametrize("max_rows", [1, 4, 9])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("hidden_act", NEW_CASES, ids=str)
def test_jacobian_new_activations_match_twin(dtype, hidden_act, sparse, max_rows):
    problem = _problem(dtype, (4, 3), hidden_act, "softmax", sparse=sparse, seed=3,
                       max_rows=max_rows)
    got = _jacobian(_curvature, problem)
    want = _jacobian(_reference, problem)
    assert np.isfinite(got).all()
    assert_allclose(got, want, rtol=RTOL[dtype], atol=10 * RTOL[dtype])


# ---------------------------------------------------------------------------
# derivatives, float64 central differences


FD_CASES = [(act, head) for act in HIDDEN + NEW_CASES for head in HEAD_NAMES]


@pytest.mark.parametrize("weighted, alpha", [(True, 0.05), (False, 0.0)])
@pytest.mark.parametrize("hidden_act, head", FD_CASES, ids=str)
def test_hvp_matches_differences_of_gradients(hidden_act, head, weighted, alpha):
    # Multi-output squared error too: H is the derivative of the gradient.
    problem = _problem(np.float64, (4, 3), hidden_act, head, weighted=weighted)
    _away_from_kinks(problem)
    rng = np.random.RandomState(0)
    h = 1e-5
    for _ in range(2):
        v = rng.randn(problem.plan.n_params)
        numeric = (
            _grad(problem, problem.params + h * v, alpha)
            - _grad(problem, problem.params - h * v, alpha)
        ) / (2 * h)
        _, got = _hvp(_curvature, problem, v, alpha)
        assert np.abs(got).max() > 1e-3
        assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("head", HEAD_NAMES)
@pytest.mark.parametrize("module", list(MODULES))
def test_hvp_prepared_reuses_the_passes_in_work(module, head, sparse):
    problem = _problem(np.float64, (4, 3), "logistic", head, sparse=sparse)
    rng = np.random.RandomState(0)
    v1, v2 = rng.randn(2, problem.plan.n_params)
    _, want1 = _hvp(_curvature, problem, v1)
    _, want2 = _hvp(_curvature, problem, v2)
    dtype, size = problem.params.dtype, problem.plan.work_size
    work, rwork = np.full(size, np.nan), np.full(size, np.nan)
    grad, out = np.empty_like(problem.params), np.empty_like(problem.params)
    args = (problem.plan, problem.X, problem.csr, problem.Y, problem.sw,
            problem.params)
    _epoch.loss_grad(*args, grad, work, 0.05)  # leaves both passes in work
    hvp = MODULES[module].hessian_vector_product
    assert np.isnan(hvp(*args, v1, out, work, rwork, 0.05, True))
    assert_allclose(out, want1, rtol=1e-12, atol=1e-14)
    assert np.isnan(hvp(*args, v2.astype(dtype), out, work, rwork, 0.05, True))
    assert_allclose(out, want2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_hvp_sparse_equals_dense(head):
    sparse = _problem(np.float64, (4,), "logistic", head, sparse=True)
    dense = dataclasses.replace(sparse, X=sparse.dense, csr=None)
    v = np.random.RandomState(2).randn(sparse.plan.n_params)
    assert_allclose(_hvp(_curvature, sparse, v)[1], _hvp(_curvature, dense, v)[1],
                    rtol=1e-12, atol=1e-14)


def test_hessian_from_unit_vectors_is_symmetric_and_linear():
    problem = _problem(np.float64, (3,), "logistic", "softmax", n_out=3)
    P = problem.plan.n_params
    H = np.column_stack([_hvp(_curvature, problem, e)[1] for e in np.eye(P)])
    assert_allclose(H, H.T, rtol=1e-10, atol=1e-13)
    v = np.random.RandomState(0).randn(P)
    assert_allclose(_hvp(_curvature, problem, v)[1], H @ v, rtol=1e-10, atol=1e-13)


def test_hvp_no_hidden_layer_by_hand():
    # Logistic regression: H = (X1^T diag(w p (1 - p)) X1 + alpha I_W) / S.
    problem = _problem(np.float64, (), "identity", "logistic", n_out=1)
    X1 = np.hstack([problem.dense, np.ones((problem.n_samples, 1))])
    p = 1 / (1 + np.exp(-(X1 @ problem.params)))
    w = problem.sw
    alpha = 0.3
    reg = np.diag([alpha] * problem.dense.shape[1] + [0.0])
    H = (X1.T @ (X1 * (w * p * (1 - p))[:, None]) + reg) / w.sum()
    v = np.random.RandomState(0).randn(problem.plan.n_params)
    assert_allclose(_hvp(_curvature, problem, v, alpha)[1], H @ v, rtol=1e-12)


@pytest.mark.parametrize("hidden_act, head", FD_CASES, ids=str)
def test_jacobian_matches_central_differences(hidden_act, head):
    problem = _problem(np.float64, (4, 3), hidden_act, head)
    _away_from_kinks(problem)
    X, h = problem.X, 1e-6
    n, F = X.shape
    numeric = np.empty((n, problem.plan.units[-1], F))
    out = np.empty((n, problem.plan.units[-1]))
    work = np.empty(problem.plan.work_size)
    for j in range(F):
        for sign in (1, -1):
            Xh = X.copy()
            Xh[:, j] += sign * h
            _epoch.forward(problem.plan, Xh, None, problem.params, work, out)
            numeric[:, :, j] = out / (2 * h) if sign == 1 else (
                numeric[:, :, j] - out / (2 * h))
    got = _jacobian(_curvature, problem)
    assert np.abs(got).max() > 1e-3
    assert_allclose(got, numeric, rtol=1e-6, atol=1e-9)


def test_jacobian_sparse_equals_dense():
    sparse = _problem(np.float64, (4,), "tanh", "softmax", sparse=True)
    dense = dataclasses.replace(sparse, X=sparse.dense, csr=None)
    assert_allclose(_jacobian(_curvature, sparse), _jacobian(_curvature, dense),
                    rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------
# bad input


def _call(problem, **changes):
    args = {"plan": problem.plan, "X": problem.X, "csr": problem.csr,
            "Y": problem.Y, "sample_weight": problem.sw, "params": problem.params,
            "v": np.ones_like(problem.params), "out": np.empty_like(problem.params),
            "work": np.empty(problem.plan.work_size),
            "rwork": np.empty(problem.plan.work_size), "alpha": 0.1}
    args.update(changes)
    return _curvature.hessian_vector_product(*args.values())


def test_hvp_valid_call_runs():
    _call(_problem())


@pytest.mark.parametrize(
    "changes, match",
    [
        (lambda p: {"v": np.ones(p.plan.n_params - 1)}, "v has length"),
        (lambda p: {"out": np.ones(p.plan.n_params + 1)}, "out has length"),
        (lambda p: {"rwork": np.ones(p.plan.work_size - 1)}, "rwork has length"),
        (lambda p: {"work": np.ones(p.plan.work_size - 1)}, "workspace"),
        (lambda p: {"Y": None}, "needs targets"),
        (lambda p: {"Y": p.Y[:-1]}, "Y must have shape"),
        (lambda p: {"sample_weight": p.sw[:-1]}, "sample_weight"),
        (lambda p: {"X": np.ascontiguousarray(p.X[:, :-1])}, "features"),
        (lambda p: {"X": np.vstack([p.X, p.X]), "Y": np.vstack([p.Y, p.Y]),
                    "sample_weight": None}, "do not fit"),
        (lambda p: {"params": np.ones(p.plan.n_params + 2)}, "parameter buffer"),
        (lambda p: {"plan": dataclasses.replace(
            p.plan, acts=np.array([4] * (len(p.plan.acts) - 1) + [p.plan.out_act]))},
         "'softmax' is not a hidden activation \\(layer 1\\)"),
        (lambda p: {"plan": dataclasses.replace(p.plan, loss=2)}, "canonical"),
    ],
)
def test_hvp_bad_input_raises(changes, match):
    problem = _problem()
    with pytest.raises(ValueError, match=match):
        _call(problem, **changes(problem))


def test_hvp_out_aliasing_raises():
    problem = _problem()
    v = np.ones_like(problem.params)
    with pytest.raises(ValueError, match="share memory"):
        _call(problem, v=v, out=v)
    params = problem.params.copy()
    with pytest.raises(ValueError, match="share memory"):
        _call(problem, params=params, out=params)


@pytest.mark.parametrize(
    "shape", [lambda n, m, F: (n + 1, m, F), lambda n, m, F: (n, m + 1, F),
              lambda n, m, F: (n, m, F - 1)])
def test_jacobian_bad_out_raises(shape):
    problem = _problem()
    units = problem.plan.units
    out = np.empty(shape(problem.n_samples, units[-1], units[0]))
    with pytest.raises(ValueError, match="out must have shape"):
        _curvature.jacobian(problem.plan, problem.X, None, problem.params,
                            np.empty(problem.plan.work_size), out)
