"""The flat parameter buffer: offsets, views, packing and Glorot init."""

import itertools
import warnings

import numpy as np
import pytest
from fastbp._kernels import ACTIVATIONS, LOSSES
from numpy.testing import assert_array_equal

from fastbp._network import glorot_init, make_plan, pack, param_offsets, unpack

UNITS = [[3, 1], [1, 1], [4, 5, 2], [6, 7, 3, 1], [2, 8, 8, 8, 3]]
UNITS_IDS = ["-".join(map(str, u)) for u in UNITS]


def test_param_offsets_by_hand():
    # 4 -> 5 -> 2: coefs 4*5 = 20 at 0 and 5*2 = 10 at 20, then intercepts
    # 5 at 30 and 2 at 35; 37 in all.
    coef_off, bias_off, n_params = param_offsets([4, 5, 2])
    assert_array_equal(coef_off, [0, 20])
    assert_array_equal(bias_off, [30, 35])
    assert n_params == 37
    assert coef_off.dtype == np.intp and bias_off.dtype == np.intp


@pytest.mark.parametrize("units", UNITS, ids=UNITS_IDS)
def test_param_offsets_tile_the_buffer(units):
    coef_off, bias_off, n_params = param_offsets(units)
    sizes = [a * b for a, b in itertools.pairwise(units)] + units[1:]
    starts = np.r_[coef_off, bias_off]
    assert_array_equal(starts, np.cumsum([0] + sizes)[:-1])
    assert n_params == sum(sizes)


def _random_layers(rng, units, dtype):
    coefs = [rng.randn(a, b).astype(dtype) for a, b in itertools.pairwise(units)]
    intercepts = [rng.randn(b).astype(dtype) for b in units[1:]]
    return coefs, intercepts


@pytest.mark.parametrize("units", UNITS, ids=UNITS_IDS)
def test_pack_unpack_round_trip(units, dtype):
    rng = np.random.RandomState(0)
    coefs, intercepts = _random_layers(rng, units, dtype)
    flat = pack(coefs, intercepts, dtype)
    assert flat.dtype == dtype and flat.ndim == 1
    assert flat.size == param_offsets(units)[2]
    # scikit-learn's _pack order: every coef matrix row-major, then intercepts
    assert_array_equal(flat, np.concatenate([c.ravel() for c in coefs] + intercepts))
    got_coefs, got_intercepts = unpack(flat, units)
    assert len(got_coefs) == len(got_intercepts) == len(units) - 1
    for got, want in zip(got_coefs + got_intercepts, coefs + intercepts, strict=True):
        assert got.shape == want.shape and got.dtype == dtype
        assert_array_equal(got, want)
    assert_array_equal(pack(got_coefs, got_intercepts, dtype), flat)


@pytest.mark.parametrize("units", UNITS, ids=UNITS_IDS)
def test_unpack_views_share_the_buffer(units):
    flat = np.zeros(param_offsets(units)[2])
    coefs, intercepts = unpack(flat, units)
    for view in coefs + intercepts:
        assert np.shares_memory(view, flat)
        assert view.base is flat or view.base.base is flat
    # Writing through the views fills every entry exactly once.
    value = 1.0
    for view in coefs + intercepts:
        view[...] = value + np.arange(view.size).reshape(view.shape)
        value += view.size
    assert_array_equal(flat, np.arange(1, flat.size + 1))
    # and writing the buffer shows through the views
    flat *= -1
    assert coefs[0].flat[0] == -1
    assert intercepts[-1][-1] == -flat.size


def test_pack_makes_a_new_buffer(dtype):
    coefs, intercepts = _random_layers(np.random.RandomState(1), [3, 2], dtype)
    flat = pack(coefs, intercepts, dtype)
    assert not np.shares_memory(flat, coefs[0])
    flat[0] += 1
    assert flat[0] != coefs[0][0, 0]


def test_pack_casts_to_dtype():
    coefs, intercepts = _random_layers(np.random.RandomState(2), [3, 2], np.float64)
    flat = pack(coefs, intercepts, np.float32)
    assert flat.dtype == np.float32
    assert_array_equal(flat[:6], coefs[0].ravel().astype(np.float32))


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("units", UNITS, ids=UNITS_IDS)
def test_glorot_init_draws_in_sklearn_order(units, activation, dtype):
    flat = glorot_init(units, activation, np.random.RandomState(42), dtype)
    # scikit-learn's _init_coef, layer by layer: coef then intercept, from one
    # RandomState; factor 2 for logistic, 6 otherwise.
    rng = np.random.RandomState(42)
    factor = 2.0 if activation == "logistic" else 6.0
    coefs, intercepts = [], []
    for fan_in, fan_out in itertools.pairwise(units):
        bound = np.sqrt(factor / (fan_in + fan_out))
        coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        intercepts.append(rng.uniform(-bound, bound, fan_out))
    assert flat.dtype == dtype
    got_coefs, got_intercepts = unpack(flat, units)
    for got, want in zip(got_coefs + got_intercepts, coefs + intercepts, strict=True):
        assert_array_equal(got, want.astype(dtype))
    # the generator is left where scikit-learn leaves it
    probe = np.random.RandomState(42)
    glorot_init(units, activation, probe, dtype)
    assert probe.randint(2**31) == rng.randint(2**31)


def test_glorot_bounds():
    # 4 -> 12: bound sqrt(6 / 16) = 0.6124; sqrt(2 / 16) = 0.3536 for logistic
    for activation, bound in [("relu", np.sqrt(6 / 16)), ("logistic", np.sqrt(2 / 16))]:
        flat = glorot_init([4, 12], activation, np.random.RandomState(0), np.float64)
        assert np.abs(flat).max() <= bound
        assert np.abs(flat).max() > 0.9 * bound  # 60 draws fill the interval


def test_glorot_matches_sklearn_mlp():
    # The weights scikit-learn's own MLP initializes from the same seed.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    X = np.random.RandomState(0).randn(10, 3)
    y = np.arange(10.0)
    mlp = MLPRegressor(
        hidden_layer_sizes=(4, 2),
        activation="logistic",
        solver="sgd",
        learning_rate_init=1e-300,
        max_iter=1,
        random_state=3,
        shuffle=False,
        batch_size=10,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, y)
    flat = glorot_init([3, 4, 2, 1], "logistic", np.random.RandomState(3), np.float64)
    coefs, intercepts = unpack(flat, [3, 4, 2, 1])
    # A learning rate of 1e-300 leaves the initial weights in place.
    for got, want in zip(coefs + intercepts, mlp.coefs_ + mlp.intercepts_, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("gather", [False, True])
@pytest.mark.parametrize("units", UNITS, ids=UNITS_IDS)
def test_make_plan_layout(units, gather):
    max_rows = 7
    plan = make_plan(units, "tanh", "identity", "squared_error", max_rows, gather)
    assert_array_equal(plan.units, units)
    coef_off, bias_off, n_params = param_offsets(units)
    assert_array_equal(plan.coef_off, coef_off)
    assert_array_equal(plan.bias_off, bias_off)
    assert plan.n_params == n_params
    assert (plan.out_act, plan.loss) == (
        ACTIVATIONS["identity"],
        LOSSES["squared_error"],
    )
    assert_array_equal(
        plan.acts, [ACTIVATIONS["tanh"]] * (len(units) - 2) + [ACTIVATIONS["identity"]]
    )
    assert_array_equal(plan.pre_off, -1)  # tanh needs no pre-activations
    # Activation, delta and gather regions tile the workspace without overlap.
    regions = [(o, u * max_rows) for o, u in zip(plan.act_off, units[1:])]
    regions += [(o, u * max_rows) for o, u in zip(plan.delta_off, units[1:])]
    if gather:
        regions.append((plan.gather_off, units[0] * max_rows))
    else:
        assert plan.gather_off == -1
    covered = np.zeros(plan.work_size, dtype=int)
    for start, size in regions:
        covered[start : start + size] += 1
    assert_array_equal(covered, 1)


@pytest.mark.parametrize("gather", [False, True])
def test_make_plan_preactivation_regions(gather):
    # gelu and silu layers get pre-activation regions after everything else.
    units, max_rows = [3, 4, 5, 2], 6
    plan = make_plan(units, ["gelu", "relu"], "silu", "squared_error", max_rows,
                     gather)
    assert_array_equal(
        plan.acts, [ACTIVATIONS[a] for a in ("gelu", "relu", "silu")]
    )
    assert plan.pre_off[1] == -1
    regions = [(o, u * max_rows) for o, u in zip(plan.act_off, units[1:])]
    regions += [(o, u * max_rows) for o, u in zip(plan.delta_off, units[1:])]
    regions += [(plan.pre_off[0], 4 * max_rows), (plan.pre_off[2], 2 * max_rows)]
    if gather:
        regions.append((plan.gather_off, units[0] * max_rows))
    covered = np.zeros(plan.work_size, dtype=int)
    for start, size in regions:
        covered[start : start + size] += 1
    assert_array_equal(covered, 1)


def test_per_layer_activation_length_is_checked():
    with pytest.raises(ValueError, match="one name per hidden layer"):
        make_plan([3, 4, 2], ["relu", "tanh"], "identity", "squared_error", 2, False)


def test_glorot_init_per_layer_factors():
    # Layer i uses its activation's factor, the output layer the last hidden's.
    units = [3, 4, 5, 2]
    flat = glorot_init(units, ["logistic", "relu"], np.random.RandomState(0),
                       np.float64)
    rng = np.random.RandomState(0)
    want = []
    for (a, b), factor in zip(itertools.pairwise(units), [2.0, 6.0, 6.0]):
        bound = np.sqrt(factor / (a + b))
        want.append((rng.uniform(-bound, bound, (a, b)),
                     rng.uniform(-bound, bound, b)))
    coefs, intercepts = unpack(flat, units)
    for (W, b), got_W, got_b in zip(want, coefs, intercepts):
        assert_array_equal(got_W, W)
        assert_array_equal(got_b, b)
