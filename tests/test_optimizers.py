"""Update rules against their NumPy twins and against steps worked by hand.

Every rule runs through the one compiled entry, ``_optimizers.step``, and its
twin ``_reference.step``; ``SOLVER_CASES`` holds one row (or more) per
solver of ``fastbp._families.SOLVERS``.
"""

import copy
import math

import numpy as np
import pytest
from conftest import RTOL
from numpy.testing import assert_allclose

from fastbp import _optimizers, _reference
from fastbp._families import SOLVER, SOLVERS
from fastbp._settings import Settings

ATOL = {np.float32: 1e-6, np.float64: 1e-12}


def _step(solver, params, grad, states, t=0, module=_optimizers, **hyper):
    """The rule's step through module.step, its state arrays (updated in
    place) joined into the flat state it takes; hyper: Settings fields, lr
    for learning_rate."""
    state = np.concatenate(states) if states else np.zeros(0, params.dtype)
    settings = Settings(SOLVER[solver].code, hyper.pop("lr"), **hyper)
    module.step(settings, params, grad, state, t)
    for array, new in zip(states, np.split(state, len(states)), strict=True):
        array[...] = new


def _sgd(nesterov):
    def hyper(rng):
        return dict(lr=rng.uniform(0.001, 0.5), momentum=rng.uniform(0, 0.99),
                    nesterov=nesterov)

    return hyper


def _adam_family(weight_decay=0.0):
    def hyper(rng):
        return dict(lr=rng.uniform(1e-4, 0.1), beta_1=rng.uniform(0.5, 0.95),
                    beta_2=rng.uniform(0.9, 0.9999), weight_decay=weight_decay)

    return hyper


def _adagrad(rng):
    return dict(lr=rng.uniform(1e-3, 0.5))


def _decay(lo, eps):
    def hyper(rng):
        return dict(lr=rng.uniform(lo, 1.0 if lo >= 0.1 else 0.5),
                    rho=rng.uniform(0.5, 0.99), epsilon=eps)

    return hyper


# id, solver, t, hyperparameters: the test rows of each solver.
SOLVER_CASES = [
    ("sgd", "sgd", 0, _sgd(False)),
    ("sgd-nesterov", "sgd", 0, _sgd(True)),
    ("adam-t1", "adam", 1, _adam_family()),
    ("adam-t2", "adam", 2, _adam_family()),
    ("adam-t50", "adam", 50, _adam_family()),
    ("adagrad", "adagrad", 0, _adagrad),
    ("rmsprop", "rmsprop", 0, _decay(1e-3, 1e-8)),
    ("adadelta", "adadelta", 0, _decay(0.1, 1e-6)),
    ("adamw-t1", "adamw", 1, _adam_family(0.01)),
    ("adamw-t7-strong-decay", "adamw", 7, _adam_family(3.0)),
    ("adamax-t1", "adamax", 1, _adam_family()),
    ("adamax-t30", "adamax", 30, _adam_family()),
    ("nadam-t1", "nadam", 1, _adam_family()),
    ("nadam-t30", "nadam", 30, _adam_family()),
]


def _clip(norm_share, clip_value):
    def make(rng, dtype, n):
        grad = (3 * rng.randn(n)).astype(dtype)
        clip_norm = norm_share * float(np.linalg.norm(grad))
        value = clip_value * float(np.abs(grad).max())
        return grad, clip_norm, value

    return make


CLIP_CASES = [
    ("clip-norm", _clip(0.5, 0)),
    ("clip-value", _clip(0, 0.5)),
    ("clip-both", _clip(0.3, 0.6)),
]


def test_every_solver_has_a_test_row_and_a_twin_rule():
    assert {c[1] for c in SOLVER_CASES} == set(SOLVER)
    for s in SOLVERS:
        assert callable(getattr(_reference, f"_{s.name}_rule"))


def test_compiled_entries_are_step_and_clip_gradient():
    compiled = {
        name
        for name in dir(_optimizers)
        if callable(getattr(_optimizers, name)) and not name.startswith("_")
    }
    assert compiled == {"step", "clip_gradient"}


def test_table_facts_reach_the_compiled_module():
    assert _optimizers.SOLVERS == {s.name: s.code for s in SOLVERS}
    assert len(set(_optimizers.SOLVERS.values())) == len(SOLVERS)
    assert _optimizers.STATE_ARRAYS == {s.name: s.state_arrays for s in SOLVERS}


@pytest.mark.parametrize("n", [1, 2, 37])
@pytest.mark.parametrize(
    "solver, t, make_hyper", [c[1:] for c in SOLVER_CASES],
    ids=[c[0] for c in SOLVER_CASES],
)
def test_compiled_equals_twin(solver, t, make_hyper, dtype, seed, n):
    rng = np.random.RandomState(seed)
    params, grad = (rng.randn(n).astype(dtype) for _ in range(2))
    # Non-negative state (second moments); a first moment may be anything.
    states = [rng.uniform(0, 2, n).astype(dtype)
              for _ in range(SOLVER[solver].state_arrays)]
    if len(states) == 2 and SOLVER[solver].counts_steps:
        states[0] = rng.randn(n).astype(dtype)
    hyper = make_hyper(rng)
    got = copy.deepcopy([params, grad, states])
    want = copy.deepcopy([params, grad, states])
    _step(solver, *got, t, **hyper)
    _step(solver, *want, t, module=_reference, **dict(hyper))
    for g, w in zip([got[0], *got[2]], [want[0], *want[2]], strict=True):
        assert g.dtype == dtype
        assert_allclose(g, w, rtol=RTOL[dtype], atol=ATOL[dtype])
    assert not np.array_equal(got[0], params)  # params moved


@pytest.mark.parametrize("n", [1, 2, 37])
@pytest.mark.parametrize("make_args", [c[1] for c in CLIP_CASES],
                         ids=[c[0] for c in CLIP_CASES])
def test_clip_compiled_equals_twin(make_args, dtype, seed, n):
    rng = np.random.RandomState(seed)
    args = make_args(rng, dtype, n)
    got, want = copy.deepcopy(args), copy.deepcopy(args)
    assert _optimizers.clip_gradient(*got) is None
    _reference.clip_gradient(*want)
    assert_allclose(got[0], want[0], rtol=RTOL[dtype], atol=ATOL[dtype])


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
    _step("sgd", params, grad, [velocity], lr=lr, momentum=momentum,
          nesterov=nesterov)
    assert_allclose(velocity, want_velocity, rtol=RTOL[dtype])
    assert_allclose(params, want_params, rtol=RTOL[dtype])


def test_sgd_step_without_momentum_is_gradient_descent(dtype):
    params, grad, velocity = _arrays(dtype, [1.0, -2.0], [0.5, -1.0], [7.0, 7.0])
    _step("sgd", params, grad, [velocity], lr=0.25, momentum=0.0)
    # momentum 0: velocity = -lr grad = (-0.125, 0.25), and so is the step
    assert_allclose(velocity, [-0.125, 0.25], rtol=RTOL[dtype])
    assert_allclose(params, [0.875, -1.75], rtol=RTOL[dtype])


def _adam(dtype, params, grad, m, v, t, lr, beta_1, beta_2, epsilon, solver="adam",
          **extra):
    _step(solver, params, grad, [m, v], t, lr=lr, beta_1=beta_1, beta_2=beta_2,
          epsilon=epsilon, **extra)


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
    _adam(dtype, params, grad, m, v, 1, lr, beta1, beta2, eps)
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
    _adam(dtype, params, grad, m, v, 2, 0.1, 0.5, 0.75, 0.3)
    assert_allclose(
        params, [1 - step * 0.5 / 0.8, -2 + step * 0.2 / 0.5], rtol=RTOL[dtype]
    )


def test_adam_first_step_moves_by_lr(dtype):
    # From zero moments the bias-corrected first step is -lr sign(g), up to eps:
    # m = 0.1 g, sqrt(v) = sqrt(0.001) |g|, step = lr sqrt(0.001) / 0.1.
    params, grad, m, v = _arrays(
        dtype, [1.0, -2.0, 0.5], [0.5, -3.0, 0.02], [0, 0, 0], [0, 0, 0]
    )
    _adam(dtype, params, grad, m, v, 1, 1e-3, 0.9, 0.999, 1e-8)
    assert_allclose(params, [1 - 1e-3, -2 + 1e-3, 0.5 - 1e-3], rtol=1e-5)


@pytest.mark.parametrize("module", [_optimizers, _reference],
                         ids=["compiled", "twin"])
@pytest.mark.parametrize("solver", [s.name for s in SOLVERS if s.counts_steps])
def test_step_counting_rules_refuse_t0(dtype, solver, module):
    params, grad, m, v = _arrays(dtype, [1.0], [1.0], [0.0], [0.0])
    for t in (0, -3):
        with pytest.raises(ValueError, match="t=1"):
            _step(solver, params, grad, [m, v], t, module=module, lr=0.1)
    assert params[0] == 1 and m[0] == 0 and v[0] == 0  # nothing written


@pytest.mark.parametrize("module", [_optimizers, _reference],
                         ids=["compiled", "twin"])
@pytest.mark.parametrize("solver", list(SOLVER))
def test_length_mismatch_raises(dtype, solver, module):
    k = SOLVER[solver].state_arrays
    settings = Settings(SOLVER[solver].code, 0.1)
    for n_params, n_grad, n_state in ((3, 2, 3 * k), (3, 3, 3 * k + 1),
                                      (3, 3, 3 * k - 1)):
        with pytest.raises(ValueError, match="differ in length"):
            module.step(settings, np.zeros(n_params, dtype),
                        np.zeros(n_grad, dtype), np.zeros(n_state, dtype), 1)


@pytest.mark.parametrize("module", [_optimizers, _reference],
                         ids=["compiled", "twin"])
def test_unknown_solver_code_raises(dtype, module):
    with pytest.raises(ValueError, match="unknown solver code"):
        module.step(Settings(max(_optimizers.SOLVERS.values()) + 1, 0.1),
                    *_arrays(dtype, [1.0], [1.0], [0.0]), 1)


# Steps of the other rules worked by hand: two or three steps each, on
# numbers chosen so square roots come out exact.


def test_adagrad_steps_by_hand(dtype):
    params, G = _arrays(dtype, [1.0, -2.0], [0.0, 0.0])
    lr = 0.1
    # g = (0.6, -0.8): G = (0.36, 0.64), sqrt(G) = (0.6, 0.8)
    # params -= 0.1 g / sqrt(G) = 0.1 (1, -1)
    _step("adagrad", params, *_arrays(dtype, [0.6, -0.8]), [G], lr=lr, epsilon=0.0)
    assert_allclose(G, [0.36, 0.64], rtol=RTOL[dtype])
    assert_allclose(params, [0.9, -1.9], rtol=RTOL[dtype])
    # g = (0.8, 0.6): G = (1, 1); params -= 0.1 (0.8, 0.6)
    _step("adagrad", params, *_arrays(dtype, [0.8, 0.6]), [G], lr=lr, epsilon=0.0)
    assert_allclose(G, [1.0, 1.0], rtol=RTOL[dtype])
    assert_allclose(params, [0.82, -1.96], rtol=RTOL[dtype])
    # eps outside the root: G = (1, 1) + (3, 0) = (4, 1) for g = (sqrt(3), 0);
    # step = 0.1 sqrt(3) / (2 + 0.5)
    _step("adagrad", params, *_arrays(dtype, [math.sqrt(3), 0.0]), [G], lr=lr,
          epsilon=0.5)
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
        _step("rmsprop", params, *_arrays(dtype, g), [v], lr=lr, rho=rho,
              epsilon=0.0)
        assert_allclose(v, want_v, rtol=RTOL[dtype])
        assert_allclose(params, want_params, rtol=RTOL[dtype], atol=1e-7)
    # eps outside the root: v = 0.75 (1, 2.25) + 0.25 (4, 0) = (1.75, 1.6875)
    _step("rmsprop", params, *_arrays(dtype, [2, 0]), [v], lr=lr, rho=rho,
          epsilon=0.5)
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
    _step("adadelta", params, *_arrays(dtype, [2.0, -2.0]), [Eg2, Edx2], lr=lr,
          rho=rho, epsilon=eps)
    assert_allclose(Eg2, [1.0, 7.0], rtol=RTOL[dtype])
    assert_allclose(Edx2, [1.75, 5.4], rtol=RTOL[dtype])
    assert_allclose(params, [0.0, -2 - 0.5 * dx2], rtol=RTOL[dtype], atol=1e-7)
    # g = (4, 0): Eg2 = (0.75 + 4, 5.25) = (4.75, 5.25); dx = (sqrt(4.75) /
    # sqrt(7.75) * 4, 0); Edx2 = (1.3125 + 0.25 dx^2, 4.05)
    dx1 = math.sqrt(4.75 / 7.75) * 4
    _step("adadelta", params, *_arrays(dtype, [4.0, 0.0]), [Eg2, Edx2], lr=lr,
          rho=rho, epsilon=eps)
    assert_allclose(Eg2, [4.75, 5.25], rtol=RTOL[dtype])
    assert_allclose(Edx2, [1.3125 + 0.25 * dx1**2, 4.05], rtol=RTOL[dtype])
    assert_allclose(params, [-0.5 * dx1, -2 - 0.5 * dx2], rtol=RTOL[dtype])


def test_adamw_steps_by_hand(dtype):
    # The first step of test_adam_step_by_hand, with the weights decayed by
    # 1 - lr weight_decay = 1 - 0.1 * 0.5 = 0.95 first.
    params, m, v = _arrays(dtype, [1.0, -2.0], [0.2, 0.0], [0.12, 0.0])
    _adam(dtype, params, *_arrays(dtype, [0.8, -0.4]), m, v, 1, 0.1, 0.5, 0.75,
          0.3, solver="adamw", weight_decay=0.5)
    assert_allclose(m, [0.5, -0.2], rtol=RTOL[dtype])
    assert_allclose(v, [0.25, 0.04], rtol=RTOL[dtype])
    assert_allclose(params, [0.95 - 0.0625, -1.9 + 0.04], rtol=RTOL[dtype])
    # t = 2, g = 0: m = (0.25, -0.1), v = (0.1875, 0.03), step as in
    # test_adam_step_bias_correction_by_hand: 0.1 sqrt(7) / 3
    step = 0.1 * math.sqrt(7) / 3
    _adam(dtype, params, *_arrays(dtype, [0.0, 0.0]), m, v, 2, 0.1, 0.5, 0.75,
          0.3, solver="adamw", weight_decay=0.5)
    want = [
        0.95 * 0.8875 - step * 0.25 / (math.sqrt(0.1875) + 0.3),
        0.95 * -1.86 + step * 0.1 / (math.sqrt(0.03) + 0.3),
    ]
    assert_allclose(params, want, rtol=RTOL[dtype])


def test_adamw_without_decay_is_adam(dtype, seed):
    rng = np.random.RandomState(seed)
    params, grad, m = (rng.randn(9).astype(dtype) for _ in range(3))
    v = rng.uniform(0, 2, 9).astype(dtype)
    hyper = _adam_family(0.0)(rng)
    got = copy.deepcopy([params, grad, [m, v]])
    want = copy.deepcopy([params, grad, [m, v]])
    _step("adamw", *got, 3, **dict(hyper))
    _step("adam", *want, 3, **dict(hyper))
    for g, w in zip([got[0], *got[2]], [want[0], *want[2]], strict=True):
        np.testing.assert_array_equal(g, w)


def test_adamax_steps_by_hand(dtype):
    params, m, u = _arrays(dtype, [1.0, -2.0], [0.0, 0.0], [0.0, 0.0])
    lr, beta1, beta2 = 0.1, 0.5, 0.5
    # t = 1, g = (0.4, -2): m = (0.2, -1), u = max(0, |g|) = (0.4, 2)
    # params -= 0.1 / (1 - 0.5) m / u = 0.2 (0.5, -0.5)
    _adam(dtype, params, *_arrays(dtype, [0.4, -2.0]), m, u, 1, lr, beta1, beta2,
          0.0, solver="adamax")
    assert_allclose(m, [0.2, -1.0], rtol=RTOL[dtype])
    assert_allclose(u, [0.4, 2.0], rtol=RTOL[dtype])
    assert_allclose(params, [0.9, -1.9], rtol=RTOL[dtype])
    # t = 2, g = (0.1, 4): m = (0.15, 1.5), u = max((0.2, 1), (0.1, 4))
    # = (0.2, 4); params -= 0.1 / 0.75 (0.75, 0.375) = (0.1, 0.05)
    _adam(dtype, params, *_arrays(dtype, [0.1, 4.0]), m, u, 2, lr, beta1, beta2,
          0.0, solver="adamax")
    assert_allclose(m, [0.15, 1.5], rtol=RTOL[dtype])
    assert_allclose(u, [0.2, 4.0], rtol=RTOL[dtype])
    assert_allclose(params, [0.8, -1.95], rtol=RTOL[dtype])


def test_nadam_steps_by_hand(dtype):
    params, m, v = _arrays(dtype, [1.0, -2.0], [0.0, 0.0], [0.0, 0.0])
    lr, beta1, beta2 = 0.1, 0.5, 0.75
    # t = 1, g = (2, -1): m = (1, -0.5), v = 0.25 g^2 = (1, 0.25)
    # m_hat = 0.5 m / (1 - 0.25) + 0.5 g / 0.5 = (2/3 + 2, -1/3 - 1)
    # v_hat = v / 0.25 = (4, 1); params -= 0.1 m_hat / sqrt(v_hat)
    _adam(dtype, params, *_arrays(dtype, [2.0, -1.0]), m, v, 1, lr, beta1, beta2,
          0.0, solver="nadam")
    assert_allclose(m, [1.0, -0.5], rtol=RTOL[dtype])
    assert_allclose(v, [1.0, 0.25], rtol=RTOL[dtype])
    assert_allclose(params, [1 - 0.4 / 3, -2 + 0.4 / 3], rtol=RTOL[dtype])
    # t = 2, g = 0: m = (0.5, -0.25), v = (0.75, 0.1875);
    # m_hat = 0.5 m / (1 - 0.125) = (2/7, -1/7); v_hat = v / (1 - 0.5625)
    # = (12/7, 3/7)
    _adam(dtype, params, *_arrays(dtype, [0.0, 0.0]), m, v, 2, lr, beta1, beta2,
          0.0, solver="nadam")
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
