"""Update rules against their NumPy twins and against steps worked by hand."""

import copy
import math

import numpy as np
import pytest
from conftest import RTOL
from numpy.testing import assert_allclose

from fastbp import _optimizers, _reference

ATOL = {np.float32: 1e-6, np.float64: 1e-12}


def _sgd(nesterov):
    def make(rng, dtype, n):
        params, grad, velocity = (rng.randn(n).astype(dtype) for _ in range(3))
        lr, momentum = rng.uniform(0.001, 0.5), rng.uniform(0, 0.99)
        return params, grad, velocity, lr, momentum, nesterov

    return make


def _adam(t):
    def make(rng, dtype, n):
        params, grad, m = (rng.randn(n).astype(dtype) for _ in range(3))
        v = rng.uniform(0, 2, n).astype(dtype)
        lr = rng.uniform(1e-4, 0.1)
        beta1, beta2 = rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.9999)
        return params, grad, m, v, t, lr, beta1, beta2, 1e-8

    return make


CASES = [
    ("sgd", "sgd_step", _sgd(False)),
    ("sgd-nesterov", "sgd_step", _sgd(True)),
    ("adam-t1", "adam_step", _adam(1)),
    ("adam-t2", "adam_step", _adam(2)),
    ("adam-t50", "adam_step", _adam(50)),
]


def test_table_covers_every_rule():
    compiled = {
        name
        for name in dir(_optimizers)
        if callable(getattr(_optimizers, name)) and not name.startswith("_")
    }
    assert compiled == {name for _, name, _ in CASES}


@pytest.mark.parametrize("n", [1, 2, 37])
@pytest.mark.parametrize(
    "name, make_args", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_compiled_equals_twin(name, make_args, dtype, seed, n):
    rng = np.random.RandomState(seed)
    args = make_args(rng, dtype, n)
    got, want = copy.deepcopy(args), copy.deepcopy(args)
    assert getattr(_optimizers, name)(*got) is None
    getattr(_reference, name)(*want)
    for before, g, w in zip(args, got, want, strict=True):
        if isinstance(before, np.ndarray):
            assert g.dtype == dtype
            assert_allclose(g, w, rtol=RTOL[dtype], atol=ATOL[dtype])
    assert not np.array_equal(got[0], args[0])  # params moved


def _arrays(dtype, *values):
    return [np.array(v, dtype=dtype) for v in values]


@pytest.mark.parametrize("nesterov", [False, True], ids=["classical", "nesterov"])
def test_sgd_step_by_hand(dtype, nesterov):
    params, grad, velocity = _arrays(dtype, [1.0, -2.0], [0.5, -1.0], [0.1, 0.0])
    lr, momentum = 0.1, 0.9
    # velocity = 0.9 * (0.1, 0) - 0.1 * (0.5, -1) = (0.09 - 0.05, 0 + 0.1)
    want_velocity = [0.04, 0.1]
    if nesterov:
        # params += 0.9 * (0.04, 0.1) - 0.1 * (0.5, -1)
        #         = (0.036 - 0.05, 0.09 + 0.1) = (-0.014, 0.19)
        want_params = [1 - 0.014, -2 + 0.19]
    else:
        want_params = [1 + 0.04, -2 + 0.1]  # params += velocity
    _optimizers.sgd_step(params, grad, velocity, lr, momentum, nesterov)
    assert_allclose(velocity, want_velocity, rtol=RTOL[dtype])
    assert_allclose(params, want_params, rtol=RTOL[dtype])


def test_sgd_step_without_momentum_is_gradient_descent(dtype):
    params, grad, velocity = _arrays(dtype, [1.0, -2.0], [0.5, -1.0], [7.0, 7.0])
    _optimizers.sgd_step(params, grad, velocity, 0.25, 0.0, True)
    # momentum 0: velocity = -lr grad = (-0.125, 0.25), and so is the step
    assert_allclose(velocity, [-0.125, 0.25], rtol=RTOL[dtype])
    assert_allclose(params, [0.875, -1.75], rtol=RTOL[dtype])


def test_adam_step_by_hand(dtype):
    params, grad, m, v = _arrays(
        dtype, [1.0, -2.0], [0.8, -0.4], [0.2, 0.0], [0.12, 0.0]
    )
    lr, beta1, beta2, eps = 0.1, 0.5, 0.75, 0.3
    # m = 0.5 m + 0.5 g            = (0.1 + 0.4, 0 - 0.2)   = (0.5, -0.2)
    # v = 0.75 v + 0.25 g^2        = (0.09 + 0.16, 0 + 0.04) = (0.25, 0.04)
    # t = 1: step = lr sqrt(1 - 0.75) / (1 - 0.5) = 0.1 * 0.5 / 0.5 = 0.1
    # params -= step m / (sqrt(v) + eps):
    #   0.1 * 0.5 / (0.5 + 0.3) = 0.0625;  0.1 * -0.2 / (0.2 + 0.3) = -0.04
    _optimizers.adam_step(params, grad, m, v, 1, lr, beta1, beta2, eps)
    assert_allclose(m, [0.5, -0.2], rtol=RTOL[dtype])
    assert_allclose(v, [0.25, 0.04], rtol=RTOL[dtype])
    assert_allclose(params, [1 - 0.0625, -2 + 0.04], rtol=RTOL[dtype])


def test_adam_step_bias_correction_by_hand(dtype):
    params, grad, m, v = _arrays(
        dtype, [1.0, -2.0], [0.8, -0.4], [0.2, 0.0], [0.12, 0.0]
    )
    # Same moments as above, now at t = 2:
    # step = 0.1 sqrt(1 - 0.75^2) / (1 - 0.5^2) = 0.1 sqrt(7/16) / (3/4)
    #      = 0.1 sqrt(7) / 3
    step = 0.1 * math.sqrt(7) / 3
    _optimizers.adam_step(params, grad, m, v, 2, 0.1, 0.5, 0.75, 0.3)
    assert_allclose(
        params, [1 - step * 0.5 / 0.8, -2 + step * 0.2 / 0.5], rtol=RTOL[dtype]
    )


def test_adam_first_step_moves_by_lr(dtype):
    # From zero moments the bias-corrected first step is -lr sign(g), up to eps:
    # m = 0.1 g, sqrt(v) = sqrt(0.001) |g|, step = lr sqrt(0.001) / 0.1.
    params, grad, m, v = _arrays(
        dtype, [1.0, -2.0, 0.5], [0.5, -3.0, 0.02], [0, 0, 0], [0, 0, 0]
    )
    _optimizers.adam_step(params, grad, m, v, 1, 1e-3, 0.9, 0.999, 1e-8)
    assert_allclose(params, [1 - 1e-3, -2 + 1e-3, 0.5 - 1e-3], rtol=1e-5)


def test_adam_step_t0_raises(dtype):
    params, grad, m, v = _arrays(dtype, [1.0], [1.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="t=1"):
        _optimizers.adam_step(params, grad, m, v, 0, 0.1, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="t=1"):
        _optimizers.adam_step(params, grad, m, v, -3, 0.1, 0.9, 0.999, 1e-8)
    assert params[0] == 1 and m[0] == 0 and v[0] == 0  # nothing written


@pytest.mark.parametrize("short", ["grad", "velocity"])
def test_sgd_step_length_mismatch_raises(dtype, short):
    arrays = {k: np.zeros(3, dtype=dtype) for k in ("params", "grad", "velocity")}
    arrays[short] = np.zeros(2, dtype=dtype)
    with pytest.raises(ValueError, match="differ in length"):
        _optimizers.sgd_step(*arrays.values(), 0.1, 0.9, True)


@pytest.mark.parametrize("short", ["grad", "m", "v"])
def test_adam_step_length_mismatch_raises(dtype, short):
    arrays = {k: np.zeros(3, dtype=dtype) for k in ("params", "grad", "m", "v")}
    arrays[short] = np.zeros(4, dtype=dtype)
    with pytest.raises(ValueError, match="differ in length"):
        _optimizers.adam_step(*arrays.values(), 1, 0.1, 0.9, 0.999, 1e-8)
