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


def _state(rng, dtype, n, k):
    """params, grad and k non-negative state arrays."""
    params, grad = (rng.randn(n).astype(dtype) for _ in range(2))
    return [params, grad] + [rng.uniform(0, 2, n).astype(dtype) for _ in range(k)]


def _adagrad(rng, dtype, n):
    return (*_state(rng, dtype, n, 1), rng.uniform(1e-3, 0.5), 1e-8)


def _rmsprop(rng, dtype, n):
    return (*_state(rng, dtype, n, 1), rng.uniform(1e-3, 0.5),
            rng.uniform(0.5, 0.99), 1e-8)


def _adadelta(rng, dtype, n):
    return (*_state(rng, dtype, n, 2), rng.uniform(0.1, 1.0),
            rng.uniform(0.5, 0.99), 1e-6)


def _adam_family(t, extra=()):
    def make(rng, dtype, n):
        params, grad, v = _state(rng, dtype, n, 1)
        m = rng.randn(n).astype(dtype)
        lr = rng.uniform(1e-4, 0.1)
        beta1, beta2 = rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.9999)
        return (params, grad, m, v, t, lr, beta1, beta2, 1e-8, *extra)

    return make


def _clip(norm_share, clip_value):
    def make(rng, dtype, n):
        grad = (3 * rng.randn(n)).astype(dtype)
        clip_norm = norm_share * float(np.linalg.norm(grad))
        value = clip_value * float(np.abs(grad).max())
        return grad, clip_norm, value

    return make


CASES = [
    ("sgd", "sgd_step", _sgd(False)),
    ("sgd-nesterov", "sgd_step", _sgd(True)),
    ("adam-t1", "adam_step", _adam(1)),
    ("adam-t2", "adam_step", _adam(2)),
    ("adam-t50", "adam_step", _adam(50)),
    ("adagrad", "adagrad_step", _adagrad),
    ("rmsprop", "rmsprop_step", _rmsprop),
    ("adadelta", "adadelta_step", _adadelta),
    ("adamw-t1", "adamw_step", _adam_family(1, (0.01,))),
    ("adamw-t7-strong-decay", "adamw_step", _adam_family(7, (3.0,))),
    ("adamax-t1", "adamax_step", _adam_family(1)),
    ("adamax-t30", "adamax_step", _adam_family(30)),
    ("nadam-t1", "nadam_step", _adam_family(1)),
    ("nadam-t30", "nadam_step", _adam_family(30)),
    ("clip-norm", "clip_gradient", _clip(0.5, 0)),
    ("clip-value", "clip_gradient", _clip(0, 0.5)),
    ("clip-both", "clip_gradient", _clip(0.3, 0.6)),
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
    assert not np.array_equal(got[0], args[0])  # params (or grad) moved


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


# Steps of the other rules worked by hand: two or three steps each, on
# numbers chosen so square roots come out exact.


def test_adagrad_steps_by_hand(dtype):
    params, G = _arrays(dtype, [1.0, -2.0], [0.0, 0.0])
    lr = 0.1
    # g = (0.6, -0.8): G = (0.36, 0.64), sqrt(G) = (0.6, 0.8)
    # params -= 0.1 g / sqrt(G) = 0.1 (1, -1)
    _optimizers.adagrad_step(params, *_arrays(dtype, [0.6, -0.8]), G, lr, 0.0)
    assert_allclose(G, [0.36, 0.64], rtol=RTOL[dtype])
    assert_allclose(params, [0.9, -1.9], rtol=RTOL[dtype])
    # g = (0.8, 0.6): G = (1, 1); params -= 0.1 (0.8, 0.6)
    _optimizers.adagrad_step(params, *_arrays(dtype, [0.8, 0.6]), G, lr, 0.0)
    assert_allclose(G, [1.0, 1.0], rtol=RTOL[dtype])
    assert_allclose(params, [0.82, -1.96], rtol=RTOL[dtype])
    # eps outside the root: G = (1, 1) + (3, 0) = (4, 1) for g = (sqrt(3), 0);
    # step = 0.1 sqrt(3) / (2 + 0.5)
    _optimizers.adagrad_step(params, *_arrays(dtype, [math.sqrt(3), 0.0]), G, lr,
                             0.5)
    assert_allclose(params, [0.82 - 0.1 * math.sqrt(3) / 2.5, -1.96],
                    rtol=RTOL[dtype])


def test_rmsprop_steps_by_hand(dtype):
    params, v = _arrays(dtype, [1.0, -2.0], [0.0, 0.0])
    lr, rho = 0.1, 0.75
    steps = [
        # g        v = 0.75 v + 0.25 g^2     params -= 0.1 g / sqrt(v)
        ([2, -4], [1, 4], [0.8, -1.8]),
        ([1, 0], [1, 3], [0.7, -1.8]),
        ([-1, 0], [1, 2.25], [0.8, -1.8]),
    ]
    for g, want_v, want_params in steps:
        _optimizers.rmsprop_step(params, *_arrays(dtype, g), v, lr, rho, 0.0)
        assert_allclose(v, want_v, rtol=RTOL[dtype])
        assert_allclose(params, want_params, rtol=RTOL[dtype], atol=1e-7)
    # eps outside the root: v = 0.75 (1, 2.25) + 0.25 (4, 0) = (1.75, 1.6875)
    _optimizers.rmsprop_step(params, *_arrays(dtype, [2, 0]), v, lr, rho, 0.5)
    assert_allclose(params, [0.8 - 0.2 / (math.sqrt(1.75) + 0.5), -1.8],
                    rtol=RTOL[dtype])


def test_adadelta_steps_by_hand(dtype):
    params, Eg2, Edx2 = _arrays(dtype, [1.0, -2.0], [0.0, 8.0], [1.0, 6.0])
    lr, rho, eps = 0.5, 0.75, 3.0
    # g = (2, -2): Eg2 = (0.25 * 4, 6 + 1) = (1, 7)
    # dx = sqrt(Edx2 + 3) / sqrt(Eg2 + 3) g = (2 / 2 * 2, 3 / sqrt(10) * -2)
    # Edx2 = 0.75 Edx2 + 0.25 dx^2 = (0.75 + 1, 4.5 + 0.25 * 3.6) = (1.75, 5.4)
    # params -= 0.5 dx
    dx2 = -6 / math.sqrt(10)
    _optimizers.adadelta_step(params, *_arrays(dtype, [2.0, -2.0]), Eg2, Edx2,
                              lr, rho, eps)
    assert_allclose(Eg2, [1.0, 7.0], rtol=RTOL[dtype])
    assert_allclose(Edx2, [1.75, 5.4], rtol=RTOL[dtype])
    assert_allclose(params, [0.0, -2 - 0.5 * dx2], rtol=RTOL[dtype], atol=1e-7)
    # g = (4, 0): Eg2 = (0.75 + 4, 5.25) = (4.75, 5.25); dx = (sqrt(4.75) /
    # sqrt(7.75) * 4, 0); Edx2 = (1.3125 + 0.25 dx^2, 4.05)
    dx1 = math.sqrt(4.75 / 7.75) * 4
    _optimizers.adadelta_step(params, *_arrays(dtype, [4.0, 0.0]), Eg2, Edx2,
                              lr, rho, eps)
    assert_allclose(Eg2, [4.75, 5.25], rtol=RTOL[dtype])
    assert_allclose(Edx2, [1.3125 + 0.25 * dx1**2, 4.05], rtol=RTOL[dtype])
    assert_allclose(params, [-0.5 * dx1, -2 - 0.5 * dx2], rtol=RTOL[dtype])


def test_adamw_steps_by_hand(dtype):
    # The first step of test_adam_step_by_hand, with the weights decayed by
    # 1 - lr weight_decay = 1 - 0.1 * 0.5 = 0.95 first.
    params, m, v = _arrays(dtype, [1.0, -2.0], [0.2, 0.0], [0.12, 0.0])
    _optimizers.adamw_step(params, *_arrays(dtype, [0.8, -0.4]), m, v, 1, 0.1,
                           0.5, 0.75, 0.3, 0.5)
    assert_allclose(m, [0.5, -0.2], rtol=RTOL[dtype])
    assert_allclose(v, [0.25, 0.04], rtol=RTOL[dtype])
    assert_allclose(params, [0.95 - 0.0625, -1.9 + 0.04], rtol=RTOL[dtype])
    # t = 2, g = 0: m = (0.25, -0.1), v = (0.1875, 0.03), step as in
    # test_adam_step_bias_correction_by_hand: 0.1 sqrt(7) / 3
    step = 0.1 * math.sqrt(7) / 3
    _optimizers.adamw_step(params, *_arrays(dtype, [0.0, 0.0]), m, v, 2, 0.1,
                           0.5, 0.75, 0.3, 0.5)
    want = [
        0.95 * 0.8875 - step * 0.25 / (math.sqrt(0.1875) + 0.3),
        0.95 * -1.86 + step * 0.1 / (math.sqrt(0.03) + 0.3),
    ]
    assert_allclose(params, want, rtol=RTOL[dtype])


def test_adamw_without_decay_is_adam(dtype, seed):
    rng = np.random.RandomState(seed)
    args = _adam_family(3, (0.0,))(rng, dtype, 9)
    got, want = copy.deepcopy(args), copy.deepcopy(args[:-1])
    _optimizers.adamw_step(*got)
    _optimizers.adam_step(*want)
    for g, w in zip(got[:4], want[:4], strict=True):
        np.testing.assert_array_equal(g, w)


def test_adamax_steps_by_hand(dtype):
    params, m, u = _arrays(dtype, [1.0, -2.0], [0.0, 0.0], [0.0, 0.0])
    lr, beta1, beta2 = 0.1, 0.5, 0.5
    # t = 1, g = (0.4, -2): m = (0.2, -1), u = max(0, |g|) = (0.4, 2)
    # params -= 0.1 / (1 - 0.5) m / u = 0.2 (0.5, -0.5)
    _optimizers.adamax_step(params, *_arrays(dtype, [0.4, -2.0]), m, u, 1, lr,
                            beta1, beta2, 0.0)
    assert_allclose(m, [0.2, -1.0], rtol=RTOL[dtype])
    assert_allclose(u, [0.4, 2.0], rtol=RTOL[dtype])
    assert_allclose(params, [0.9, -1.9], rtol=RTOL[dtype])
    # t = 2, g = (0.1, 4): m = (0.15, 1.5), u = max((0.2, 1), (0.1, 4))
    # = (0.2, 4); params -= 0.1 / 0.75 (0.75, 0.375) = (0.1, 0.05)
    _optimizers.adamax_step(params, *_arrays(dtype, [0.1, 4.0]), m, u, 2, lr,
                            beta1, beta2, 0.0)
    assert_allclose(m, [0.15, 1.5], rtol=RTOL[dtype])
    assert_allclose(u, [0.2, 4.0], rtol=RTOL[dtype])
    assert_allclose(params, [0.8, -1.95], rtol=RTOL[dtype])


def test_nadam_steps_by_hand(dtype):
    params, m, v = _arrays(dtype, [1.0, -2.0], [0.0, 0.0], [0.0, 0.0])
    lr, beta1, beta2 = 0.1, 0.5, 0.75
    # t = 1, g = (2, -1): m = (1, -0.5), v = 0.25 g^2 = (1, 0.25)
    # m_hat = 0.5 m / (1 - 0.25) + 0.5 g / 0.5 = (2/3 + 2, -1/3 - 1)
    # v_hat = v / 0.25 = (4, 1); params -= 0.1 m_hat / sqrt(v_hat)
    _optimizers.nadam_step(params, *_arrays(dtype, [2.0, -1.0]), m, v, 1, lr,
                           beta1, beta2, 0.0)
    assert_allclose(m, [1.0, -0.5], rtol=RTOL[dtype])
    assert_allclose(v, [1.0, 0.25], rtol=RTOL[dtype])
    assert_allclose(params, [1 - 0.4 / 3, -2 + 0.4 / 3], rtol=RTOL[dtype])
    # t = 2, g = 0: m = (0.5, -0.25), v = (0.75, 0.1875);
    # m_hat = 0.5 m / (1 - 0.125) = (2/7, -1/7); v_hat = v / (1 - 0.5625)
    # = (12/7, 3/7)
    _optimizers.nadam_step(params, *_arrays(dtype, [0.0, 0.0]), m, v, 2, lr,
                           beta1, beta2, 0.0)
    want = [
        1 - 0.4 / 3 - 0.1 * (2 / 7) / math.sqrt(12 / 7),
        -2 + 0.4 / 3 + 0.1 * (1 / 7) / math.sqrt(3 / 7),
    ]
    assert_allclose(params, want, rtol=RTOL[dtype])


@pytest.mark.parametrize(
    "clip_norm, clip_value, want",
    [
        (2.5, 0, [1.5, -2.0]),  # norm 5 scaled to 2.5
        (10.0, 0, [3.0, -4.0]),  # within the norm: untouched
        (5.0, 0, [3.0, -4.0]),  # exactly at the norm: untouched
        (0, 3.5, [3.0, -3.5]),
        (0, 0, [3.0, -4.0]),  # both off
        # value first, (3, -3.5), then its norm sqrt(21.25) scaled to 1
        (1.0, 3.5, [3 / math.sqrt(21.25), -3.5 / math.sqrt(21.25)]),
    ],
)
def test_clip_gradient_by_hand(dtype, clip_norm, clip_value, want):
    (grad,) = _arrays(dtype, [3.0, -4.0])
    _optimizers.clip_gradient(grad, clip_norm, clip_value)
    assert_allclose(grad, want, rtol=RTOL[dtype])


@pytest.mark.parametrize(
    "rule, t",
    [("adamw_step", (0.0,)), ("adamax_step", ()), ("nadam_step", ())],
)
def test_adam_family_t0_raises(dtype, rule, t):
    params, grad, m, v = _arrays(dtype, [1.0], [1.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="t=1"):
        getattr(_optimizers, rule)(params, grad, m, v, 0, 0.1, 0.9, 0.999, 1e-8,
                                   *t)
    assert params[0] == 1 and m[0] == 0 and v[0] == 0


@pytest.mark.parametrize(
    "rule, n_state, scalars",
    [
        ("adagrad_step", 1, (0.1, 1e-8)),
        ("rmsprop_step", 1, (0.1, 0.9, 1e-8)),
        ("adadelta_step", 2, (1.0, 0.9, 1e-6)),
        ("adamw_step", 2, (1, 0.1, 0.9, 0.999, 1e-8, 0.01)),
        ("adamax_step", 2, (1, 0.1, 0.9, 0.999, 1e-8)),
        ("nadam_step", 2, (1, 0.1, 0.9, 0.999, 1e-8)),
    ],
)
def test_new_rules_length_mismatch_raises(dtype, rule, n_state, scalars):
    for short in range(1, 2 + n_state):  # grad, then each state array
        arrays = [np.zeros(3, dtype=dtype) for _ in range(2 + n_state)]
        arrays[short] = np.zeros(2, dtype=dtype)
        with pytest.raises(ValueError, match="differ in length"):
            getattr(_optimizers, rule)(*arrays, *scalars)
