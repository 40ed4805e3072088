"""Compiled kernels against their NumPy twins, hand-worked values, safety."""

import copy

import numpy as np
from scipy.special import expit
import pytest
import scipy.sparse as sp
from conftest import RTOL
from numpy.testing import assert_allclose

from fastbp import _kernels, _reference
from fastbp._families import HIDDEN_ACTIVATIONS, SKLEARN_ACTIVATIONS

ACT = _kernels.ACTIVATIONS
LOSS = _kernels.LOSSES
# Values are O(1); atol covers entries that cancel to nearly zero.
ATOL = {np.float32: 1e-6, np.float64: 1e-12}
# expf/softmax in float32: libm and NumPy's SIMD exp differ by a few ulps.
ATOL_EXP = {np.float32: 1e-5, np.float64: 1e-12}
N_ROWS = [1, 7, None]  # None: a random batch size drawn from the seed


def _intp(a):
    return np.asarray(a, dtype=np.intp)


def _softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _random_csr(rng, n_rows, n_cols, dtype):
    """CSR with intp indices as the estimators pass it; row 0 stores nothing."""
    D = rng.randn(n_rows, n_cols) * (rng.rand(n_rows, n_cols) < 0.5)
    if n_rows > 1:
        D[0] = 0
    X = sp.csr_matrix(D.astype(dtype))
    return X.data, _intp(X.indices), _intp(X.indptr)


# ---------------------------------------------------------------------------
# Argument makers: make(rng, dtype, n) -> args of the compiled function and
# its twin, n the batch rows.


def _bias_act(act):
    def make(rng, dtype, n):
        m = rng.randint(2, 7)
        Z = 3 * rng.randn(n, m)
        b = rng.randn(m)
        pre = rng.randn(n, m).astype(dtype)  # must be overwritten
        return Z.astype(dtype), b.astype(dtype), ACT[act], pre

    return make


def _act_grad(act):
    def make(rng, dtype, n):
        m = rng.randint(1, 7)
        Z = (2 * rng.randn(n, m)).astype(dtype)
        A = Z.copy()
        _reference.bias_act(A, np.zeros(m, dtype), ACT[act])
        delta = rng.randn(n, m)
        return A, delta.astype(dtype), ACT[act], Z

    return make


def _loss_targets(rng, loss, n, m):
    """(P, Y) valid for the loss: probabilities, one-hot, counts."""
    if loss == "squared_error":
        return rng.randn(n, m), rng.randn(n, m)
    if loss == "log_loss":
        P = _softmax(2 * rng.randn(n, m))
        return P, np.eye(m)[rng.randint(m, size=n)]
    if loss == "binary_log_loss":
        P = 1 / (1 + np.exp(-2 * rng.randn(n, m)))
        return P, rng.randint(2, size=(n, m)).astype(float)
    if loss in ("absolute_error", "huber", "quantile"):
        return rng.randn(n, m), rng.randn(n, m)
    if loss == "gamma":
        return np.exp(rng.randn(n, m)), rng.gamma(2.0, size=(n, m))
    return np.exp(rng.randn(n, m)), rng.poisson(1.5, size=(n, m)).astype(float)


# The parameter of the losses that have one (Huber's delta, the quantile).
LOSS_PARAM = {"huber": 0.7, "quantile": 0.3}


def _loss_delta(loss, weighted, subset):
    def make(rng, dtype, n):
        m = rng.randint(2, 5)
        n_y = n + 3 if subset else n
        P, _ = _loss_targets(rng, loss, n, m)
        _, Y = _loss_targets(rng, loss, n_y, m)
        sw = rng.uniform(0.2, 3.0, n_y).astype(dtype) if weighted else None
        rows = _intp(rng.randint(n_y, size=n)) if subset else None
        delta = rng.randn(n, m).astype(dtype)  # must be overwritten
        return (P.astype(dtype), Y.astype(dtype), sw, rows, LOSS[loss], delta,
                LOSS_PARAM.get(loss, 0.0))

    return make


def _bias_grad(rng, dtype, n):
    m = rng.randint(1, 7)
    delta = rng.randn(n, m).astype(dtype)
    out = rng.randn(m).astype(dtype)
    return delta, rng.uniform(0.5, 40.0), out


def _l2_grad(rng, dtype, n):
    size = n * rng.randint(1, 5)
    grad_W = rng.randn(size).astype(dtype)
    W = rng.randn(size).astype(dtype)
    return grad_W, W, rng.uniform(0, 2), rng.uniform(0.5, 40.0)


def _l1_grad(rng, dtype, n):
    size = n * rng.randint(1, 5)
    grad_W = rng.randn(size).astype(dtype)
    W = rng.randn(size).astype(dtype)
    W[rng.rand(size) < 0.2] = 0  # the subgradient is 0 there
    return grad_W, W, rng.uniform(0, 2), rng.uniform(0.5, 40.0)


def _dropout_forward(rng, dtype, n):
    m = rng.randint(1, 7)
    col0 = rng.randint(0, 4)
    A = rng.randn(n, m).astype(dtype)
    mask = rng.randn(n, m).astype(dtype)  # must be overwritten
    return (A, mask, rng.uniform(0, 0.9), int(rng.randint(2**62)) * 3,
            rng.randint(0, 50), col0, col0 + m + rng.randint(0, 4))


def _dropout_backward(rng, dtype, n):
    m = rng.randint(1, 7)
    rate = rng.uniform(0, 0.9)
    mask = np.where(rng.rand(n, m) < rate, 0, 1 / (1 - rate)).astype(dtype)
    A = rng.randn(n, m).astype(dtype) * mask
    return A, mask, rng.randn(n, m).astype(dtype), rate


def _sq_norm(rng, dtype, n):
    return (rng.randn(n * rng.randint(1, 5)).astype(dtype),)


def _gather_rows(rng, dtype, n):
    n_x, n_features = rng.randint(1, 12), rng.randint(1, 6)
    X = rng.randn(n_x, n_features).astype(dtype)
    rows = _intp(rng.randint(n_x, size=n))
    out = rng.randn(n, n_features).astype(dtype)
    return X, rows, out


def _csr_forward(subset):
    def make(rng, dtype, n):
        fan_in, fan_out = rng.randint(1, 8), rng.randint(1, 5)
        n_x = n + 4 if subset else n
        data, indices, indptr = _random_csr(rng, n_x, fan_in, dtype)
        rows = _intp(rng.randint(n_x, size=n)) if subset else None
        W = rng.randn(fan_in, fan_out).astype(dtype)
        out = rng.randn(n, fan_out).astype(dtype)
        return data, indices, indptr, rows, W, out

    return make


def _csr_grad(subset):
    def make(rng, dtype, n):
        fan_in, fan_out = rng.randint(1, 8), rng.randint(1, 5)
        n_x = n + 4 if subset else n
        data, indices, indptr = _random_csr(rng, n_x, fan_in, dtype)
        rows = _intp(rng.randint(n_x, size=n)) if subset else None
        delta = rng.randn(n, fan_out).astype(dtype)
        out = rng.randn(fan_in, fan_out).astype(dtype)
        return data, indices, indptr, rows, delta, out

    return make


def _bn_forward(batch, running):
    def make(rng, dtype, n):
        m = rng.randint(1, 6)
        Z, b, gamma = 3 * rng.randn(n, m) + 1, rng.randn(m), rng.randn(m)
        stats = np.concatenate([rng.randn(m), rng.uniform(0.5, 2, m)])
        zhat, stats3 = rng.randn(n, m), rng.randn(3 * m)  # overwritten
        return (Z.astype(dtype), b.astype(dtype), gamma.astype(dtype),
                zhat.astype(dtype), stats3.astype(dtype),
                stats.astype(dtype) if running else None, batch)

    return make


def _bn_backward(rng, dtype, n):
    m = rng.randint(1, 6)
    Z = 3 * rng.randn(n, m) + 1
    zhat = (Z - Z.mean(axis=0)) / np.sqrt(Z.var(axis=0) + 1e-5)
    stats = np.concatenate([Z.mean(axis=0), Z.var(axis=0),
                            1 / np.sqrt(Z.var(axis=0) + 1e-5)])
    delta, gamma = rng.randn(n, m), rng.randn(m)
    return (delta.astype(dtype), zhat.astype(dtype), stats.astype(dtype),
            gamma.astype(dtype), dtype(rng.uniform(1, 3)),
            rng.randn(m).astype(dtype), rng.randn(m).astype(dtype))


CASES = (
    [(f"bias_act-{a}", "bias_act", _bias_act(a)) for a in ACT]
    + [(f"act_grad-{a}", "act_grad", _act_grad(a)) for a in ACT]
    + [
        (
            f"loss_delta-{loss}{'-sw' if w else ''}{'-rows' if r else ''}",
            "loss_delta",
            _loss_delta(loss, w, r),
        )
        for loss in LOSS
        for w in (False, True)
        for r in (False, True)
    ]
    + [
        ("bias_grad", "bias_grad", _bias_grad),
        ("l2_grad", "l2_grad", _l2_grad),
        ("sq_norm", "sq_norm", _sq_norm),
        ("l1_grad", "l1_grad", _l1_grad),
        ("abs_sum", "abs_sum", _sq_norm),
        ("dropout_forward", "dropout_forward", _dropout_forward),
        ("dropout_backward", "dropout_backward", _dropout_backward),
        ("gather_rows", "gather_rows", _gather_rows),
        ("csr_forward", "csr_forward", _csr_forward(False)),
        ("csr_forward-rows", "csr_forward", _csr_forward(True)),
        ("csr_grad", "csr_grad", _csr_grad(False)),
        ("csr_grad-rows", "csr_grad", _csr_grad(True)),
        ("bn_forward-batch", "bn_forward", _bn_forward(True, False)),
        ("bn_forward-batch-running", "bn_forward", _bn_forward(True, True)),
        ("bn_forward-running", "bn_forward", _bn_forward(False, True)),
        ("bn_backward", "bn_backward", _bn_backward),
    ]
)


def test_table_covers_every_kernel():
    compiled = {
        name
        for name in dir(_kernels)
        if callable(getattr(_kernels, name)) and not name.startswith("_")
    }
    assert compiled == {name for _, name, _ in CASES}
    assert {c for c, _, _ in CASES if c.startswith("bias_act")} == {
        f"bias_act-{a}" for a in ACT
    }


@pytest.mark.parametrize("n_rows", N_ROWS, ids=["1row", "7rows", "random"])
@pytest.mark.parametrize(
    "name, make_args", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_compiled_equals_twin(name, make_args, dtype, seed, n_rows):
    rng = np.random.RandomState(seed)
    n = rng.randint(2, 40) if n_rows is None else n_rows
    args = make_args(rng, dtype, n)
    got_args, want_args = copy.deepcopy(args), copy.deepcopy(args)
    got = getattr(_kernels, name)(*got_args)
    want = getattr(_reference, name)(*want_args)
    atol = (ATOL_EXP if name == "bias_act" else ATOL)[dtype]
    if want is None:
        assert got is None
    else:
        assert_allclose(np.asarray(got), np.asarray(want), rtol=RTOL[dtype], atol=atol)
    for before, g, w in zip(args, got_args, want_args, strict=True):
        if isinstance(before, np.ndarray):
            assert g.dtype == before.dtype and g.shape == before.shape
            assert_allclose(g, w, rtol=RTOL[dtype], atol=atol)


# ---------------------------------------------------------------------------
# Values worked out by hand.


def _bias_act_rows(rows, act, dtype, b=None):
    Z = np.array(rows, dtype=dtype)
    b = np.zeros(Z.shape[1], dtype=dtype) if b is None else np.array(b, dtype)
    _kernels.bias_act(Z, b, ACT[act])
    return Z


def test_bias_act_hand_values(dtype):
    tol = {"rtol": RTOL[dtype], "atol": ATOL_EXP[dtype]}
    # softmax(0, log 2) = (1, 2) / 3
    assert_allclose(
        _bias_act_rows([[0, np.log(2)]], "softmax", dtype), [[1 / 3, 2 / 3]], **tol
    )
    # bias first, then the row-wise softmax: (log 3, 0) -> (3, 1) / 4, (0, 0) -> 1/2
    assert_allclose(
        _bias_act_rows([[0, 0], [-np.log(3), 0]], "softmax", dtype, b=[np.log(3), 0]),
        [[3 / 4, 1 / 4], [1 / 2, 1 / 2]],
        **tol,
    )
    assert_allclose(
        _bias_act_rows([[0, np.log(3)]], "logistic", dtype), [[0.5, 0.75]], **tol
    )  # 1 / (1 + 1/3) = 3/4
    assert_allclose(
        _bias_act_rows([[0, np.log(3)]], "tanh", dtype), [[0, 0.8]], **tol
    )  # (3 - 1/3) / (3 + 1/3) = 4/5
    assert_allclose(
        _bias_act_rows([[-1, 2, 0.5]], "relu", dtype, b=[0, 0, -1]), [[0, 2, 0]], **tol
    )
    assert_allclose(_bias_act_rows([[np.log(3), 0]], "exp", dtype), [[3, 1]], **tol)
    assert_allclose(
        _bias_act_rows([[1, 2]], "identity", dtype, b=[0.5, -2]), [[1.5, 0]], **tol
    )


def test_new_activations_hand_values(dtype):
    z = np.array([[-2.0, -0.5, 0.0, 1.5]])
    expected = {
        "leaky_relu": [[-0.02, -0.005, 0, 1.5]],
        "elu": [[np.exp(-2) - 1, np.exp(-0.5) - 1, 0, 1.5]],
        # z Phi(z): Phi(-2) = 0.022750131948179, Phi(-0.5) = 0.308537538725987,
        # Phi(1.5) = 0.933192798731142.
        "gelu": [[-2 * 0.022750131948179, -0.5 * 0.308537538725987, 0,
                  1.5 * 0.933192798731142]],
        "softplus": [[np.log1p(np.exp(-2)), np.log1p(np.exp(-0.5)), np.log(2),
                      np.log1p(np.exp(1.5))]],
        "silu": [[-2 / (1 + np.exp(2)), -0.5 / (1 + np.exp(0.5)), 0,
                  1.5 / (1 + np.exp(-1.5))]],
        "softsign": [[-2 / 3, -1 / 3, 0, 0.6]],
    }
    for act, want in expected.items():
        got = _bias_act_rows(z, act, dtype)
        assert_allclose(got, want, rtol=RTOL[dtype], atol=1e-7, err_msg=act)


# fastbp's own hidden activations, from the table: a new one is tested here.
NEW_ACTIVATIONS = [a for a in HIDDEN_ACTIVATIONS if a not in SKLEARN_ACTIVATIONS]


@pytest.mark.parametrize("act", NEW_ACTIVATIONS + ["identity", "logistic", "tanh"])
def test_act_grad_matches_central_differences(act):
    # float64, points away from the kinks of leaky_relu and elu at 0;
    # large |z| probes the tails (softplus saturation, gelu and silu decay).
    rng = np.random.RandomState(0)
    Z = np.r_[rng.uniform(-4, 4, 40), -30, -12, -1e-2, 1e-2, 12, 30][None, :]
    Z = Z[:, np.abs(Z[0]) > 1e-3]
    m = Z.shape[1]
    zeros = np.zeros(m)

    def f(V):
        V = V.copy()
        _kernels.bias_act(V, zeros, ACT[act])
        return V

    h = 1e-6
    numeric = (f(Z + h) - f(Z - h)) / (2 * h)
    A = f(Z)
    delta = np.ones_like(Z)
    _kernels.act_grad(A, delta, ACT[act], Z)
    assert_allclose(delta, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("act", ["gelu", "silu"])
def test_act_grad_needs_preactivation(act):
    A = np.zeros((2, 3))
    with pytest.raises(ValueError, match="needs Z"):
        _kernels.act_grad(A, np.ones_like(A), ACT[act])
    with pytest.raises(ValueError, match="Z rows"):
        _kernels.act_grad(A, np.ones_like(A), ACT[act], np.zeros((1, 3)))


def test_bias_act_writes_preactivation(dtype):
    Z = np.array([[-1.0, 2.0]], dtype=dtype)
    pre = np.full_like(Z, np.nan)
    _kernels.bias_act(Z, np.array([0.5, -1.0], dtype=dtype), ACT["relu"], pre)
    assert_allclose(pre, [[-0.5, 1.0]])
    assert_allclose(Z, [[0.0, 1.0]])


def test_l1_hand_values(dtype):
    W = np.array([-2.0, 0.0, 3.0], dtype=dtype)
    grad = np.ones(3, dtype=dtype)
    _kernels.l1_grad(grad, W, 0.5, 2.0)  # 0.5 / 2 * sign(W)
    assert_allclose(grad, [0.75, 1.0, 1.25], rtol=RTOL[dtype])
    assert _kernels.abs_sum(W) == 5.0


def test_dropout_masks(dtype):
    # Masks are 0 or 1 / (1 - rate), drop about rate of the units, depend only
    # on (seed, counter): a batch's rows equal the same rows of a larger pass.
    rate, seed, width = 0.3, 12345, 40
    A = np.ones((500, 40), dtype=dtype)
    mask = np.empty_like(A)
    _kernels.dropout_forward(A, mask, rate, seed, 0, 0, width)
    assert set(np.unique(mask)) == {0, dtype(1 / 0.7)}
    assert abs(np.mean(mask == 0) - rate) < 0.02
    np.testing.assert_array_equal(A, mask)
    part = np.ones((7, 15), dtype=dtype)
    part_mask = np.empty_like(part)
    _kernels.dropout_forward(part, part_mask, rate, seed, 100, 20, width)
    np.testing.assert_array_equal(part_mask, mask[100:107, 20:35])
    other = np.ones_like(A)
    _kernels.dropout_forward(other, np.empty_like(A), rate, seed + 1, 0, 0, width)
    assert np.mean(other != A) > 0.2
    with pytest.raises(ValueError, match="rate"):
        _kernels.dropout_forward(A, mask, 1.0, seed, 0, 0, width)
    with pytest.raises(ValueError, match="counters"):
        _kernels.dropout_forward(A, mask, rate, seed, 0, 1, width)


def test_act_grad_hand_values(dtype):
    A = np.array([[0.5, 0.0, 0.25]], dtype=dtype)
    expected = {
        "logistic": [[2 * 0.25, 0, 2 * 0.1875]],  # A (1 - A)
        "tanh": [[2 * 0.75, 2, 2 * 0.9375]],  # 1 - A^2
        "relu": [[2, 0, 2]],  # zero where A == 0
        "identity": [[2, 2, 2]],
    }
    for act, want in expected.items():
        delta = np.full((1, 3), 2, dtype=dtype)
        _kernels.act_grad(A, delta, ACT[act])
        assert_allclose(delta, want, rtol=RTOL[dtype], err_msg=act)


def _loss(P, Y, loss, dtype, sw=None, rows=None, loss_param=0.0, module=_kernels):
    P = np.array(P, dtype=dtype)
    Y = np.array(Y, dtype=dtype)
    sw = None if sw is None else np.array(sw, dtype=dtype)
    delta = np.full(P.shape, np.nan, dtype=dtype)
    value, sw_sum = module.loss_delta(P, Y, sw, rows, LOSS[loss], delta, loss_param)
    return value, sw_sum, delta


def test_loss_delta_hand_values(dtype):
    rtol = RTOL[dtype]
    # binary log loss of p = 0.5 is log 2 whatever the label
    value, sw_sum, delta = _loss([[0.5], [0.5]], [[0], [1]], "binary_log_loss", dtype)
    assert_allclose(value, np.log(2), rtol=rtol)
    assert sw_sum == 2
    assert_allclose(delta, [[0.5], [-0.5]], rtol=rtol)
    # categorical: -log 0.75; only the true class counts
    value, _, delta = _loss([[0.25, 0.75]], [[0, 1]], "log_loss", dtype)
    assert_allclose(value, -np.log(0.75), rtol=rtol)
    assert_allclose(delta, [[0.25, -0.25]], rtol=rtol)
    # squared error: 0.5 * mean over outputs of (1^2, 3^2) = 2.5
    value, _, delta = _loss([[1, 3]], [[0, 0]], "squared_error", dtype)
    assert_allclose(value, 2.5, rtol=rtol)
    assert_allclose(delta, [[1, 3]], rtol=rtol)
    # half Poisson deviance y log(y / p) - y + p, summed over outputs:
    # (y=1, p=2): log(1/2) - 1 + 2 = 1 - log 2;  (y=0, p=1): p = 1
    value, _, delta = _loss([[2, 1]], [[1, 0]], "poisson", dtype)
    assert_allclose(value, 1 - np.log(2) + 1, rtol=rtol)
    assert_allclose(delta, [[1, 1]], rtol=rtol)


def test_new_regression_losses_hand_values(dtype):
    rtol = RTOL[dtype]
    # e = p - y = 2 and -0.5, summed over the outputs of each row
    P, Y = [[2, 0.5]], [[0, 1]]
    value, _, delta = _loss(P, Y, "absolute_error", dtype)
    assert_allclose(value, 2.5, rtol=rtol)
    assert_allclose(delta, [[1, -1]], rtol=rtol)
    # Huber, delta 1: linear 1 (2 - 1/2) = 1.5 beyond it, 0.5^2 / 2 inside
    value, _, delta = _loss(P, Y, "huber", dtype, loss_param=1.0)
    assert_allclose(value, 1.5 + 0.125, rtol=rtol)
    assert_allclose(delta, [[1, -0.5]], rtol=rtol)
    # pinball, q = 0.25: (1 - q) 2 over the target, q 0.5 under it
    value, _, delta = _loss(P, Y, "quantile", dtype, loss_param=0.25)
    assert_allclose(value, 0.75 * 2 + 0.25 * 0.5, rtol=rtol)
    assert_allclose(delta, [[0.75, -0.25]], rtol=rtol)
    # a tie counts as under the target (scikit-learn's PinballLoss), and as
    # under it for the absolute error's sign
    _, _, delta = _loss([[1.0]], [[1.0]], "quantile", dtype, loss_param=0.25)
    assert_allclose(delta, [[-0.25]], rtol=rtol)
    _, _, delta = _loss([[1.0]], [[1.0]], "absolute_error", dtype)
    assert_allclose(delta, [[-1]], rtol=rtol)
    # half gamma deviance y/p - log(y/p) - 1: 0 at p = y; (y=1, p=2):
    # 1/2 + log 2 - 1; delta 1 - y/p
    value, _, delta = _loss([[2, 3]], [[1, 3]], "gamma", dtype)
    assert_allclose(value, 0.5 + np.log(2) - 1, rtol=rtol)
    assert_allclose(delta, [[0.5, 0]], rtol=rtol, atol=1e-7)
    # weights multiply the delta and weigh the mean
    value, sw_sum, delta = _loss([[2], [0]], [[0], [0]], "absolute_error", dtype,
                                 sw=[3, 1])
    assert_allclose(value, 3 * 2 / 4, rtol=rtol)
    assert_allclose(delta, [[3], [-1]], rtol=rtol)


@pytest.mark.parametrize("module", [_kernels, _reference], ids=["compiled", "twin"])
@pytest.mark.parametrize("loss, param", [("huber", 0.0), ("huber", -1.0),
                                         ("quantile", 0.0), ("quantile", 1.0),
                                         ("quantile", np.nan)])
def test_loss_parameter_out_of_range_raises(module, loss, param):
    with pytest.raises(ValueError, match="Huber delta|quantile"):
        _loss([[1.0]], [[0.0]], loss, np.float64, loss_param=param, module=module)


@pytest.mark.parametrize("module", [_kernels, _reference], ids=["compiled", "twin"])
def test_unknown_loss_code_raises(module):
    P = np.zeros((1, 1))
    with pytest.raises(ValueError, match="unknown loss code"):
        module.loss_delta(P, P, None, None, max(LOSS.values()) + 1, P.copy())


def _sklearn_loss(loss, param):
    """The sklearn._loss object of a loss, and the raw prediction of p
    (log p for gamma's log link); for the tests only."""
    from sklearn._loss.loss import (
        AbsoluteError, HalfGammaLoss, HuberLoss, PinballLoss,
    )

    if loss == "absolute_error":
        return AbsoluteError(), lambda p: p
    if loss == "huber":
        return HuberLoss(delta=param), lambda p: p
    if loss == "quantile":
        return PinballLoss(quantile=param), lambda p: p
    return HalfGammaLoss(), np.log


@pytest.mark.parametrize("module", [_kernels, _reference], ids=["compiled", "twin"])
@pytest.mark.parametrize("loss, param", [("absolute_error", 0.0), ("huber", 0.7),
                                         ("huber", 2.5), ("quantile", 0.1),
                                         ("quantile", 0.9), ("gamma", 0.0)])
def test_losses_match_scikit_learns_loss_module(module, loss, param, dtype):
    # Values and per-element gradients against sklearn._loss (its loss is
    # per element; ours the weighted mean over samples of the sum over
    # outputs, gamma's plus the constant that makes its optimum 0).
    rng = np.random.RandomState(4)
    n, m = 50, 3
    P, Y = _loss_targets(rng, loss, n, m)
    if loss != "gamma":
        P = P + rng.choice([0.0, 3.0, -3.0], size=P.shape)  # both Huber sides
    sw = rng.uniform(0.2, 3.0, n)
    P, Y, sw = P.astype(dtype), Y.astype(dtype), sw.astype(dtype)
    value, sw_sum, delta = _loss(P, Y, loss, dtype, sw=sw, loss_param=param,
                                 module=module)
    ref, raw = _sklearn_loss(loss, param)
    P64, Y64 = (np.asfortranarray(a, dtype=np.float64) for a in (P, Y))
    sw64 = sw.astype(np.float64)
    per_element = np.column_stack([
        ref.loss(Y64[:, k], raw(P64[:, k])) for k in range(m)])
    grad = np.column_stack([
        ref.gradient(Y64[:, k], raw(P64[:, k])) for k in range(m)])
    if loss == "gamma":
        per_element += ref.constant_to_optimal_zero(Y64)
    want = np.average(per_element.sum(axis=1), weights=sw64)
    assert_allclose(value, want, rtol=RTOL[dtype], atol=ATOL[dtype])
    assert_allclose(sw_sum, sw64.sum(), rtol=RTOL[dtype])
    assert_allclose(delta, grad * sw64[:, None], rtol=RTOL[dtype],
                    atol=ATOL_EXP[dtype])


def test_loss_delta_weights_and_rows_hand_values(dtype):
    rtol = RTOL[dtype]
    Y = [[0], [1], [2]]
    rows = _intp([2, 0])  # batch row 0 is sample 2, batch row 1 is sample 0
    P = [[1], [3]]  # errors -1 and 3
    value, sw_sum, delta = _loss(P, Y, "squared_error", dtype, rows=rows)
    assert_allclose(value, 0.5 * (1 + 9) / 2, rtol=rtol)
    assert sw_sum == 2
    assert_allclose(delta, [[-1], [3]], rtol=rtol)
    # weights of samples 2 and 0 are 3 and 1
    value, sw_sum, delta = _loss(P, Y, "squared_error", dtype, sw=[1, 5, 3], rows=rows)
    assert_allclose(value, 0.5 * (3 * 1 + 1 * 9) / 4, rtol=rtol)
    assert_allclose(sw_sum, 4, rtol=rtol)
    assert_allclose(delta, [[-3], [3]], rtol=rtol)


@pytest.mark.parametrize("exponent", [0, 1, 6, 8, -1, -20, 100, -100, 126, 1000, -1074])
def test_divide_by_a_power_of_two_is_the_divide(dtype, exponent):
    # The kernels multiply by 1 / 2^k instead of dividing by 2^k: the same
    # correctly rounded number, subnormal results and all; where 1 / 2^k
    # is not a number of the type (overflow, 0), they divide.
    info = np.finfo(dtype)
    if exponent > info.maxexp - 1 or exponent < info.minexp - info.nmant:
        pytest.skip("2^k is not a number of this type")
    rng = np.random.RandomState(exponent % 97)
    sw = dtype(2.0 ** exponent)
    for d in (sw, sw * dtype(1.5), sw * dtype(1.1)):  # and two that are not
        if not np.isfinite(d) or d == 0:
            continue
        grad_W = (rng.randn(200) * rng.choice([1, 1e-30, 1e30], 200)).astype(dtype)
        grad_W[:3] = [info.smallest_subnormal, -info.tiny, info.max / 2]
        W = rng.randn(200).astype(dtype)
        expect = (grad_W + dtype(0.25) * W) / d
        _kernels.l2_grad(grad_W, W, 0.25, float(d))
        np.testing.assert_array_equal(grad_W, expect)
        delta = rng.randn(3, 5).astype(dtype)
        out = np.empty(5, dtype=dtype)
        _kernels.bias_grad(delta, float(d), out)
        np.testing.assert_array_equal(out, delta.sum(axis=0) / d)


def test_small_kernels_hand_values(dtype):
    rtol = RTOL[dtype]
    out = np.empty(2, dtype=dtype)
    _kernels.bias_grad(np.array([[1, 2], [3, 4]], dtype=dtype), 2.0, out)
    assert_allclose(out, [2, 3], rtol=rtol)  # column sums (4, 6) / 2
    grad_W = np.array([1, 2], dtype=dtype)
    _kernels.l2_grad(grad_W, np.array([3, 4], dtype=dtype), 0.5, 2.0)
    assert_allclose(grad_W, [(1 + 1.5) / 2, (2 + 2) / 2], rtol=rtol)
    assert _kernels.sq_norm(np.array([3, 4], dtype=dtype)) == 25
    assert _kernels.sq_norm(np.array([], dtype=dtype)) == 0
    X = np.arange(6, dtype=dtype).reshape(3, 2)
    out = np.empty((3, 2), dtype=dtype)
    _kernels.gather_rows(X, _intp([2, 0, 2]), out)
    assert_allclose(out, [[4, 5], [0, 1], [4, 5]])


def test_csr_hand_values(dtype):
    # X = [[1, 0, 2], [0, 0, 0], [0, 3, 0]]
    data = np.array([1, 2, 3], dtype=dtype)
    indices, indptr = _intp([0, 2, 1]), _intp([0, 2, 2, 3])
    W = np.array([[1, 1], [10, 0], [100, -1]], dtype=dtype)
    out = np.full((3, 2), np.nan, dtype=dtype)
    _kernels.csr_forward(data, indices, indptr, None, W, out)
    assert_allclose(out, [[201, -1], [0, 0], [30, 0]])
    out = np.full((2, 2), np.nan, dtype=dtype)
    _kernels.csr_forward(data, indices, indptr, _intp([2, 1]), W, out)
    assert_allclose(out, [[30, 0], [0, 0]])
    # X[[2, 0]].T @ delta, rows of delta (1, 2) and (5, 7)
    delta = np.array([[1, 2], [5, 7]], dtype=dtype)
    out = np.full((3, 2), np.nan, dtype=dtype)
    _kernels.csr_grad(data, indices, indptr, _intp([2, 0]), delta, out)
    assert_allclose(out, [[5, 7], [3, 6], [10, 14]])


# ---------------------------------------------------------------------------
# Numerical safety.


def test_softmax_large_logits(dtype):
    Z = _bias_act_rows([[1000, 0], [-1000, -1000], [0, 1000]], "softmax", dtype)
    assert np.isfinite(Z).all()
    assert_allclose(Z, [[1, 0], [0.5, 0.5], [0, 1]], atol=ATOL[dtype])


def test_logistic_extremes(dtype):
    Z = _bias_act_rows([[-1000, 1000, 0]], "logistic", dtype)
    assert not np.isnan(Z).any()
    assert Z[0, 0] == 0 and Z[0, 1] == 1 and Z[0, 2] == 0.5


@pytest.mark.parametrize("loss", ["log_loss", "binary_log_loss"])
def test_log_loss_clips_probabilities(dtype, loss):
    eps = np.finfo(dtype).eps
    if loss == "log_loss":
        P, Y = [[0, 1], [1, 0]], [[1, 0], [1, 0]]
        # -(log eps + log(1 - eps)) / 2: the clipped 0 and the clipped 1
        want = -(np.log(eps) + np.log1p(-eps)) / 2
    else:
        P, Y = [[0], [1], [1]], [[1], [0], [1]]
        # each wrong certain prediction costs -log eps, the right one ~ eps
        want = -(2 * np.log(eps) + np.log1p(-eps)) / 3
    value, _, delta = _loss(P, Y, loss, dtype)
    assert np.isfinite(value) and np.isfinite(delta).all()
    assert_allclose(value, want, rtol=1e-6)


# ---------------------------------------------------------------------------
# Bad input raises ValueError.


def _z(*shape):
    return np.zeros(shape)


CSR_OK = (np.array([1.0, 2.0, 3.0]), _intp([0, 3, 1]), _intp([0, 2, 2, 3]))
MALFORMED_CSR = {
    "indptr-not-from-0": (CSR_OK[0], CSR_OK[1], _intp([1, 2, 2, 3]), "from 0"),
    "indptr-not-to-nnz": (CSR_OK[0], CSR_OK[1], _intp([0, 2, 2, 4]), "to nnz"),
    "indptr-empty": (CSR_OK[0], CSR_OK[1], _intp([]), "from 0"),
    "indptr-decreasing": (CSR_OK[0], CSR_OK[1], _intp([0, 2, 1, 3]), "decrease"),
    "indices-length": (CSR_OK[0], _intp([0, 3]), CSR_OK[2], "data vs indices"),
    "column-too-large": (CSR_OK[0], _intp([0, 4, 1]), CSR_OK[2], "column index"),
    "column-negative": (CSR_OK[0], _intp([0, -1, 1]), CSR_OK[2], "column index"),
}


@pytest.mark.parametrize("kernel", ["csr_forward", "csr_grad"])
@pytest.mark.parametrize("case", list(MALFORMED_CSR))
def test_malformed_csr_raises(kernel, case):
    data, indices, indptr, match = MALFORMED_CSR[case]
    n = max(len(indptr) - 1, 0)
    if kernel == "csr_forward":
        args = (None, _z(4, 2), _z(n, 2))
    else:
        args = (None, _z(n, 2), _z(4, 2))
    with pytest.raises(ValueError, match=match):
        getattr(_kernels, kernel)(data, indices, indptr, *args)


BAD_CALLS = {
    "bias_act-b": (lambda: _kernels.bias_act(_z(2, 3), _z(4), 0), "Z columns"),
    "act_grad-rows": (lambda: _kernels.act_grad(_z(2, 3), _z(3, 3), 1), "rows"),
    "act_grad-cols": (lambda: _kernels.act_grad(_z(2, 3), _z(2, 4), 1), "columns"),
    "loss_delta-Y-cols": (
        lambda: _kernels.loss_delta(_z(2, 3), _z(2, 4), None, None, 0, _z(2, 3)),
        "Y columns",
    ),
    "loss_delta-Y-rows": (
        lambda: _kernels.loss_delta(_z(2, 3), _z(3, 3), None, None, 0, _z(2, 3)),
        "batch rows",
    ),
    "loss_delta-delta-rows": (
        lambda: _kernels.loss_delta(_z(2, 3), _z(2, 3), None, None, 0, _z(1, 3)),
        "delta rows",
    ),
    "loss_delta-delta-cols": (
        lambda: _kernels.loss_delta(_z(2, 3), _z(2, 3), None, None, 0, _z(2, 2)),
        "delta columns",
    ),
    "loss_delta-rows-length": (
        lambda: _kernels.loss_delta(
            _z(2, 3), _z(5, 3), None, _intp([0, 1, 2]), 0, _z(2, 3)
        ),
        "batch rows",
    ),
    "loss_delta-row-too-large": (
        lambda: _kernels.loss_delta(
            _z(2, 3), _z(5, 3), None, _intp([0, 5]), 0, _z(2, 3)
        ),
        "out of range",
    ),
    "loss_delta-row-negative": (
        lambda: _kernels.loss_delta(
            _z(2, 3), _z(5, 3), None, _intp([-1, 0]), 0, _z(2, 3)
        ),
        "out of range",
    ),
    "loss_delta-sw-length": (
        lambda: _kernels.loss_delta(
            _z(2, 3), _z(5, 3), _z(2), _intp([0, 4]), 0, _z(2, 3)
        ),
        "sample_weight",
    ),
    "loss_delta-empty": (
        lambda: _kernels.loss_delta(_z(0, 3), _z(0, 3), None, None, 0, _z(0, 3)),
        "empty batch",
    ),
    "bias_grad-out": (lambda: _kernels.bias_grad(_z(2, 3), 1.0, _z(2)), "out"),
    "l2_grad-length": (lambda: _kernels.l2_grad(_z(3), _z(4), 1.0, 1.0), "grad_W"),
    "gather_rows-out-rows": (
        lambda: _kernels.gather_rows(_z(4, 2), _intp([0, 1]), _z(3, 2)),
        "out rows",
    ),
    "gather_rows-out-cols": (
        lambda: _kernels.gather_rows(_z(4, 2), _intp([0, 1]), _z(2, 3)),
        "out columns",
    ),
    "gather_rows-row-too-large": (
        lambda: _kernels.gather_rows(_z(4, 2), _intp([0, 4]), _z(2, 2)),
        "out of range",
    ),
    "gather_rows-row-negative": (
        lambda: _kernels.gather_rows(_z(4, 2), _intp([-1, 0]), _z(2, 2)),
        "out of range",
    ),
    "csr_forward-W-rows": (  # column 3 is out of range for a W of 3 rows
        lambda: _kernels.csr_forward(*CSR_OK, None, _z(3, 2), _z(3, 2)),
        "column index",
    ),
    "csr_forward-out-rows": (
        lambda: _kernels.csr_forward(*CSR_OK, None, _z(4, 2), _z(2, 2)),
        "out rows",
    ),
    "csr_forward-out-cols": (
        lambda: _kernels.csr_forward(*CSR_OK, None, _z(4, 2), _z(3, 3)),
        "out columns",
    ),
    "csr_forward-row-too-large": (
        lambda: _kernels.csr_forward(*CSR_OK, _intp([3]), _z(4, 2), _z(1, 2)),
        "out of range",
    ),
    "csr_forward-row-negative": (
        lambda: _kernels.csr_forward(*CSR_OK, _intp([-1]), _z(4, 2), _z(1, 2)),
        "out of range",
    ),
    "csr_forward-rows-vs-out": (
        lambda: _kernels.csr_forward(*CSR_OK, _intp([0, 1]), _z(4, 2), _z(3, 2)),
        "out rows",
    ),
    "csr_grad-out-rows": (  # out has fan_in rows: column 3 does not fit 3
        lambda: _kernels.csr_grad(*CSR_OK, None, _z(3, 2), _z(3, 2)),
        "column index",
    ),
    "csr_grad-delta-rows": (
        lambda: _kernels.csr_grad(*CSR_OK, None, _z(2, 2), _z(4, 2)),
        "delta rows",
    ),
    "csr_grad-cols": (
        lambda: _kernels.csr_grad(*CSR_OK, None, _z(3, 2), _z(4, 3)),
        "out columns",
    ),
    "csr_grad-row-too-large": (
        lambda: _kernels.csr_grad(*CSR_OK, _intp([0, 3]), _z(2, 2), _z(4, 2)),
        "out of range",
    ),
    "csr_grad-row-negative": (
        lambda: _kernels.csr_grad(*CSR_OK, _intp([-1]), _z(1, 2), _z(4, 2)),
        "out of range",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_raises(case):
    call, match = BAD_CALLS[case]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (257, 33)])
def test_tanh_exp_logistic_are_numpys_bit_for_bit(dtype, shape):
    # They run through the inner loops of np.tanh, np.exp and
    # scipy.special.expit, which scikit-learn's MLP uses: the same bits.
    rng = np.random.RandomState(0)
    Z = (rng.randn(*shape) * 4).astype(dtype)
    b = rng.randn(shape[1]).astype(dtype)
    for act, f in (("tanh", np.tanh), ("exp", np.exp), ("logistic", expit)):
        out = Z.copy()
        _kernels.bias_act(out, b, ACT[act])
        np.testing.assert_array_equal(out, f(Z + b))
    out = Z.copy()
    _kernels.bias_act(out, b, ACT["softmax"])
    e = np.exp((Z + b) - (Z + b).max(axis=1, keepdims=True))
    assert_allclose(out, e / e.sum(axis=1, keepdims=True),
                    rtol=1e-6 if dtype == np.float32 else 1e-14)
