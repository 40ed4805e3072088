"""The compiled epoch, full-batch gradient and forward pass against the twin."""

import dataclasses
import math

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import RTOL
from numpy.testing import assert_allclose

from fastbp import _epoch, _optimizers, _reference
from fastbp._families import HIDDEN_ACTIVATIONS, LOSSES, SKLEARN_ACTIVATIONS
from fastbp._network import glorot_init, make_plan, unpack
from fastbp._settings import Settings

SOLVERS = _optimizers.SOLVERS

# scikit-learn's hidden activations, fastbp's own, and every (output, loss)
# head: from the tables, so a new member is tested here.
HIDDEN = list(SKLEARN_ACTIVATIONS)
# gelu and silu keep pre-activations in the workspace.
NEW_HIDDEN = [a for a in HIDDEN_ACTIVATIONS if a not in SKLEARN_ACTIVATIONS]
MIXED = ["gelu", "relu"]  # one activation per hidden layer
HEADS = {f"{loss.output}-{loss.name}": (loss.output, loss.name) for loss in LOSSES}
# The Huber delta and the quantile of the heads that have one.
LOSS_PARAM = {"huber": 0.5, "quantile": 0.3}
NETS = [(5,), (5, 3)]
# name: (solver, lr, nesterov)
OPTIMIZERS = {
    "sgd": ("sgd", 0.02, False),
    "sgd-nesterov": ("sgd", 0.02, True),
    "adam": ("adam", 0.01, False),
    "adagrad": ("adagrad", 0.05, False),
    "rmsprop": ("rmsprop", 0.005, False),
    "adadelta": ("adadelta", 1.0, False),
    "adamw": ("adamw", 0.01, False),
    "adamax": ("adamax", 0.01, False),
    "nadam": ("nadam", 0.01, False),
}
# rho, weight_decay (strong, so a wrong decay shows), no clipping.
EXTRA = {"rho": 0.8, "weight_decay": 0.5}
MOMENTUM, BETA_1, BETA_2, EPSILON = 0.9, 0.9, 0.999, 1e-8
# Several minibatch updates compound rounding differences.
ATOL = {np.float32: 1e-5, np.float64: 1e-11}


def _targets(rng, loss, n, n_out):
    if loss == "log_loss":
        return np.eye(n_out)[rng.randint(n_out, size=n)]
    if loss == "binary_log_loss":
        return rng.randint(2, size=(n, n_out)).astype(float)
    if loss == "poisson":
        return rng.poisson(1.5, size=(n, n_out)).astype(float)
    if loss == "gamma":
        return rng.gamma(20.0, 1 / 20, size=(n, n_out))  # near 1
    return rng.randn(n, n_out)


@dataclasses.dataclass
class Problem:
    plan: object
    X: np.ndarray  # (0, n_features) when csr is given
    csr: tuple
    Y: np.ndarray
    sw: np.ndarray
    params: np.ndarray
    dense: np.ndarray  # X as a dense array, sparse or not

    @property
    def n_samples(self):
        return self.dense.shape[0]


def make_problem(
    dtype,
    hidden=(5,),
    hidden_act="tanh",
    head="softmax-log_loss",
    n_samples=13,
    max_rows=5,
    gather=True,
    sparse=False,
    weighted=True,
    n_features=4,
    n_out=None,
    seed=0,
):
    rng = np.random.RandomState(seed)
    out_act, loss = HEADS[head]
    if n_out is None:
        n_out = 3 if loss == "log_loss" else 2
    units = [n_features, *hidden, n_out]
    plan = make_plan(units, hidden_act, out_act, loss, max_rows, gather,
                     loss_param=LOSS_PARAM.get(loss, 0.0))
    params = glorot_init(units, hidden_act, rng, dtype)
    if loss == "gamma":
        # Outputs exp(z) near the targets' 1: gamma's delta 1 - y / p is
        # unbounded where p << y, which these steps would overshoot.
        params *= dtype(0.7)
    dense = rng.randn(n_samples, n_features)
    if sparse:
        dense *= rng.rand(n_samples, n_features) < 0.5
        dense[1] = 0  # a sample storing nothing
        X = sp.csr_matrix(dense.astype(dtype))
        csr = (X.data, X.indices.astype(np.intp), X.indptr.astype(np.intp))
        X = np.empty((0, n_features), dtype=dtype)
    else:
        X, csr = dense.astype(dtype), None
    Y = _targets(rng, loss, n_samples, n_out).astype(dtype)
    sw = rng.uniform(0.2, 3.0, n_samples).astype(dtype) if weighted else None
    return Problem(plan, X, csr, Y, sw, params, dense.astype(dtype))


def _buffers(problem, solver):
    """grad, work and state as the estimators allocate them, grad and work
    poisoned: everything read must have been written first."""
    plan, dtype = problem.plan, problem.params.dtype
    grad = np.full(plan.n_params, np.nan, dtype=dtype)
    work = np.full(plan.work_size, np.nan, dtype=dtype)
    n_state = _optimizers.STATE_ARRAYS[solver]
    state = np.zeros(plan.n_params * n_state, dtype=dtype)
    return grad, work, state


def _epochs(module, problem, orders, batch_size, optimizer, alpha=0.01, **extra):
    """Run one epoch per entry of orders; return everything it wrote."""
    solver, lr, nesterov = OPTIMIZERS[optimizer]
    params = problem.params.copy()
    grad, work, state = _buffers(problem, solver)
    step, losses = 0, []
    for order in orders:
        settings = Settings(
            SOLVERS[solver], lr, MOMENTUM, nesterov, BETA_1, BETA_2, EPSILON,
            alpha=alpha, **{**EXTRA, **extra},
        )
        loss_sum, step = module.run_epoch(
            problem.plan,
            settings,
            problem.X,
            problem.csr,
            problem.Y,
            problem.sw,
            order,
            batch_size,
            params,
            grad,
            work,
            state,
            step,
        )
        losses.append(loss_sum)
    return {
        "losses": losses,
        "step": step,
        "params": params,
        "grad": grad,
        "state": state,
    }


def _assert_epochs_match(got, want, dtype):
    tol = {"rtol": RTOL[dtype], "atol": ATOL[dtype]}
    assert_allclose(got["losses"], want["losses"], **tol)
    assert got["step"] == want["step"]
    for key in ("params", "grad", "state"):
        assert got[key].dtype == dtype
        assert np.isfinite(got[key]).all(), key
        assert_allclose(got[key], want[key], err_msg=key, **tol)


def _orders(problem, shuffled, rng):
    if not shuffled:
        return [None, None]
    return [rng.permutation(problem.n_samples).astype(np.intp) for _ in range(2)]


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("hidden_act", HIDDEN)
@pytest.mark.parametrize("hidden", NETS, ids=["1hidden", "2hidden"])
def test_run_epoch_networks(dtype, hidden, hidden_act, head, optimizer):
    # 13 samples in batches of 5: two full batches and a remainder of 3.
    problem = make_problem(dtype, hidden, hidden_act, head, seed=1)
    orders = _orders(problem, True, np.random.RandomState(2))
    got = _epochs(_epoch, problem, orders, 5, optimizer)
    want = _epochs(_reference, problem, orders, 5, optimizer)
    _assert_epochs_match(got, want, dtype)
    n_batches = 2 * math.ceil(13 / 5)
    counts = OPTIMIZERS[optimizer][0] in _optimizers.COUNTS_STEPS
    assert got["step"] == (n_batches if counts else 0)
    assert not np.allclose(got["params"], problem.params)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("head", ["softmax-log_loss", "identity-squared_error"])
@pytest.mark.parametrize("hidden_act", NEW_HIDDEN + [MIXED, MIXED[::-1]], ids=str)
def test_run_epoch_new_activations(dtype, hidden_act, head, optimizer):
    problem = make_problem(dtype, (5, 3), hidden_act, head, seed=1)
    orders = _orders(problem, True, np.random.RandomState(2))
    got = _epochs(_epoch, problem, orders, 5, optimizer)
    want = _epochs(_reference, problem, orders, 5, optimizer)
    _assert_epochs_match(got, want, dtype)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sw"])
@pytest.mark.parametrize("batch_size", [1, 5, 13])
@pytest.mark.parametrize("shuffled", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_run_epoch_data(dtype, sparse, shuffled, batch_size, weighted, optimizer):
    problem = make_problem(
        dtype,
        (5, 3),
        "relu",
        "softmax-log_loss",
        max_rows=batch_size,
        gather=shuffled and not sparse,
        sparse=sparse,
        weighted=weighted,
        seed=3,
    )
    orders = _orders(problem, shuffled, np.random.RandomState(4))
    got = _epochs(_epoch, problem, orders, batch_size, optimizer)
    want = _epochs(_reference, problem, orders, batch_size, optimizer)
    _assert_epochs_match(got, want, dtype)


def test_run_epoch_batches_smaller_than_plan(dtype):
    # A plan for 8 rows runs batches of 3 (13 = 4 * 3 + 1).
    problem = make_problem(dtype, max_rows=8)
    orders = _orders(problem, True, np.random.RandomState(0))
    got = _epochs(_epoch, problem, orders, 3, "adam")
    want = _epochs(_reference, problem, orders, 3, "adam")
    _assert_epochs_match(got, want, dtype)
    assert got["step"] == 2 * 5


def test_run_epoch_sparse_equals_dense(dtype):
    sparse = make_problem(dtype, sparse=True, gather=False)
    plan = make_plan(sparse.plan.units, "tanh", "softmax", "log_loss", 5, True)
    dense = dataclasses.replace(sparse, X=sparse.dense, csr=None, plan=plan)
    orders = _orders(sparse, True, np.random.RandomState(0))
    got = _epochs(_epoch, sparse, orders, 5, "sgd-nesterov")
    want = _epochs(_epoch, dense, orders, 5, "sgd-nesterov")
    _assert_epochs_match(got, want, dtype)


def test_run_epoch_duplicate_order_entries(dtype):
    # An order need not be a permutation: bootstrap-like orders are gathered.
    problem = make_problem(dtype)
    order = np.random.RandomState(0).randint(13, size=13).astype(np.intp)
    got = _epochs(_epoch, problem, [order], 5, "sgd")
    want = _epochs(_reference, problem, [order], 5, "sgd")
    _assert_epochs_match(got, want, dtype)


def test_run_epoch_loss_by_hand():
    # One sample, identity network with W = 0 and b = 0: output 0, squared
    # error 0.5 * (0 - 2)^2 = 2; batch loss times batch size 1 is 2.
    plan = make_plan([1, 1], "identity", "identity", "squared_error", 1, False)
    params = np.zeros(plan.n_params)
    grad = np.empty(2)
    state = np.zeros(2)
    loss_sum, step = _epoch.run_epoch(
        plan,
        Settings(SOLVERS["sgd"], 0.5, 0.0, False, alpha=0.0),
        np.array([[3.0]]),
        None,
        np.array([[2.0]]),
        None,
        None,
        1,
        params,
        grad,
        np.empty(plan.work_size),
        state,
        7,
    )
    assert loss_sum == 2.0 and step == 7
    # delta = 0 - 2 = -2: grad W = x delta = -6, grad b = -2; lr 0.5
    assert_allclose(grad, [-6, -2])
    assert_allclose(params, [3, 1])


# ---------------------------------------------------------------------------
# Full-batch loss and gradient, and the forward pass.


def _loss_grad(module, problem, alpha=0.01, params=None):
    params = problem.params.copy() if params is None else params
    grad = np.full(problem.plan.n_params, np.nan, dtype=params.dtype)
    work = np.full(problem.plan.work_size, np.nan, dtype=params.dtype)
    loss = module.loss_grad(
        problem.plan,
        problem.X,
        problem.csr,
        problem.Y,
        problem.sw,
        params,
        grad,
        work,
        alpha,
    )
    return loss, grad


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("hidden_act", HIDDEN + NEW_HIDDEN)
@pytest.mark.parametrize("hidden", NETS, ids=["1hidden", "2hidden"])
def test_loss_grad_networks(dtype, hidden, hidden_act, head):
    problem = make_problem(
        dtype, hidden, hidden_act, head, max_rows=13, gather=False, seed=5
    )
    before = problem.params.copy()
    loss, grad = _loss_grad(_epoch, problem)
    want_loss, want_grad = _loss_grad(_reference, problem)
    np.testing.assert_array_equal(problem.params, before)
    assert_allclose(loss, want_loss, rtol=RTOL[dtype])
    assert_allclose(grad, want_grad, rtol=RTOL[dtype], atol=ATOL[dtype])


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sw"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_loss_grad_data(dtype, sparse, weighted, head):
    # max_rows above n_samples: a plan may be larger than the pass.
    problem = make_problem(
        dtype,
        (4, 3),
        "logistic",
        head,
        max_rows=20,
        gather=False,
        sparse=sparse,
        weighted=weighted,
        seed=6,
    )
    loss, grad = _loss_grad(_epoch, problem, alpha=0.3)
    want_loss, want_grad = _loss_grad(_reference, problem, alpha=0.3)
    assert_allclose(loss, want_loss, rtol=RTOL[dtype])
    assert_allclose(grad, want_grad, rtol=RTOL[dtype], atol=ATOL[dtype])


def test_loss_grad_by_hand():
    # y = w x + b with w = 2, b = 1 on x = (1, 3), targets (0, 10), weights
    # (1, 3): outputs (3, 7), residuals (3, -3);
    # loss = 0.5 (1 * 9 + 3 * 9) / 4 + 0.5 alpha w^2 / 4 = 4.5 + 0.5 with alpha 1
    # grad w = (1 * 3 * 1 + 3 * -3 * 3 + alpha w) / 4 = (3 - 27 + 2) / 4 = -5.5
    # grad b = (1 * 3 + 3 * -3) / 4 = -1.5
    plan = make_plan([1, 1], "identity", "identity", "squared_error", 2, False)
    params = np.array([2.0, 1.0])
    grad = np.empty(2)
    loss = _epoch.loss_grad(
        plan,
        np.array([[1.0], [3.0]]),
        None,
        np.array([[0.0], [10.0]]),
        np.array([1.0, 3.0]),
        params,
        grad,
        np.empty(plan.work_size),
        1.0,
    )
    assert_allclose(loss, 5.0, rtol=1e-12)
    assert_allclose(grad, [-5.5, -1.5], rtol=1e-12)


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("max_rows", [1, 4, 13, 20])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_forward(dtype, sparse, max_rows, head):
    problem = make_problem(
        dtype,
        (5, 3),
        "relu",
        head,
        max_rows=max_rows,
        gather=False,
        sparse=sparse,
        seed=7,
    )
    out = np.full(problem.Y.shape, np.nan, dtype=dtype)
    want = np.full(problem.Y.shape, np.nan, dtype=dtype)
    work = np.full(problem.plan.work_size, np.nan, dtype=dtype)
    _epoch.forward(problem.plan, problem.X, problem.csr, problem.params, work, out)
    _reference.forward(problem.plan, problem.X, problem.csr, problem.params, work, want)
    assert_allclose(out, want, rtol=RTOL[dtype], atol=ATOL[dtype])
    if head == "softmax-log_loss":
        assert_allclose(out.sum(axis=1), 1, rtol=RTOL[dtype])


def test_forward_by_hand(dtype):
    # 2 -> 2 -> 1: hidden relu(x W1 + b1), output logistic(h W2 + b2)
    plan = make_plan([2, 2, 1], "relu", "logistic", "binary_log_loss", 2, False)
    W1, b1 = [[1, -1], [2, 0]], [0, 0.5]
    W2, b2 = [[1], [-1]], [-1]
    params = np.concatenate([np.ravel(W1), np.ravel(W2), b1, b2]).astype(dtype)
    X = np.array([[1, 1], [0, -1], [0.5, 0]], dtype=dtype)
    # x = (1, 1):   h = relu(3, -0.5) = (3, 0),   z = 3 - 1 = 2
    # x = (0, -1):  h = relu(-2, 0.5) = (0, 0.5), z = -0.5 - 1 = -1.5
    # x = (0.5, 0): h = relu(0.5, 0)  = (0.5, 0), z = 0.5 - 1 = -0.5
    out = np.empty((3, 1), dtype=dtype)
    _epoch.forward(plan, X, None, params, np.empty(plan.work_size, dtype), out)
    assert_allclose(
        out[:, 0], 1 / (1 + np.exp(-np.array([2, -1.5, -0.5]))), rtol=RTOL[dtype]
    )


# ---------------------------------------------------------------------------
# The gradient is the derivative of the loss: central differences, float64.


def _hidden_preactivations(problem):
    units = [int(u) for u in problem.plan.units]
    coefs, intercepts = unpack(problem.params, units)
    A, Zs = problem.dense, []
    for W, b in zip(coefs[:-1], intercepts[:-1]):
        Z = A @ W + b
        Zs.append(Z)
        A = np.maximum(Z, 0)  # only consulted for relu nets
    return Zs


def _central_differences(problem, alpha, h=1e-6):
    """(loss(params + h e_i) - loss(params - h e_i)) / 2h for every i."""
    numeric = np.empty(problem.plan.n_params)
    for i in range(numeric.size):
        plus, minus = problem.params.copy(), problem.params.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = (
            _loss_grad(_epoch, problem, alpha, plus)[0]
            - _loss_grad(_epoch, problem, alpha, minus)[0]
        ) / (2 * h)
    return numeric


FD_CASES = (
    [(act, head, False) for act in HIDDEN for head in HEADS]
    + [("tanh", head, True) for head in HEADS]
    + [(act, "softmax-log_loss", False) for act in NEW_HIDDEN]
    + [(MIXED, "identity-squared_error", False), (MIXED[::-1], "exp-poisson", True)]
)


@pytest.mark.parametrize(
    "hidden_act, head, sparse",
    FD_CASES,
    ids=[f"{a}-{h}-{'csr' if s else 'dense'}" for a, h, s in FD_CASES],
)
def test_gradient_matches_central_differences(hidden_act, head, sparse):
    # Squared error is averaged over outputs but its gradient is not (as in
    # scikit-learn): one output here, see test_squared_error_output_scaling.
    n_out = 1 if head == "identity-squared_error" else 3
    problem = make_problem(
        np.float64,
        (4, 3),
        hidden_act,
        head,
        max_rows=9,
        n_samples=9,
        gather=False,
        sparse=sparse,
        n_out=n_out,
        seed=8,
    )
    if hidden_act in ("relu", "leaky_relu"):
        # Every hidden unit stays on its side of the kink within +-h.
        assert min(np.abs(Z).min() for Z in _hidden_preactivations(problem)) > 1e-3
    _, grad = _loss_grad(_epoch, problem, alpha=0.05)
    assert np.abs(grad).max() > 1e-3
    assert_allclose(grad, _central_differences(problem, 0.05), rtol=1e-5, atol=1e-8)


def test_squared_error_output_scaling():
    """With n_outputs > 1 the squared-error gradient is n_outputs times the
    derivative of the reported loss: scikit-learn averages the loss over
    outputs but not the gradient, and fastbp follows it."""
    n_out = 3
    problem = make_problem(
        np.float64,
        (4,),
        "tanh",
        "identity-squared_error",
        max_rows=9,
        n_samples=9,
        gather=False,
        n_out=n_out,
    )
    _, grad = _loss_grad(_epoch, problem, alpha=0.0)
    numeric = _central_differences(problem, 0.0)
    assert_allclose(grad, n_out * numeric, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------------------
# Bad plans and inputs raise ValueError instead of reading out of bounds.


def _epoch_args(problem=None, **changes):
    """run_epoch keyword arguments for a valid call, with changes applied."""
    problem = make_problem(np.float64) if problem is None else problem
    grad, work, state = _buffers(problem, "sgd")
    args = {
        "plan": problem.plan,
        "X": problem.X,
        "csr": problem.csr,
        "Y": problem.Y,
        "sample_weight": problem.sw,
        "order": np.arange(problem.n_samples, dtype=np.intp),
        "batch_size": 5,
        "params": problem.params.copy(),
        "grad": grad,
        "work": work,
        "state": state,
        "step": 0,
    }
    settings = Settings(SOLVERS["sgd"], 0.1, 0.9, True, 0.9, 0.999, 1e-8, alpha=1e-4)
    fields = {f.name for f in dataclasses.fields(Settings)}
    args.update({k: v for k, v in changes.items() if k not in fields})
    args["settings"] = dataclasses.replace(
        settings, **{k: v for k, v in changes.items() if k in fields}
    )
    return args


def _call(args):
    args = dict(args)
    plan, settings = args.pop("plan"), args.pop("settings")
    return _epoch.run_epoch(plan, settings, **args)


def _replace_plan(**changes):
    return dataclasses.replace(make_problem(np.float64).plan, **changes)


def _sparse_args(**csr_changes):
    problem = make_problem(np.float64, sparse=True, gather=False)
    csr = dict(zip(["data", "indices", "indptr"], problem.csr))
    csr.update(csr_changes)
    return _epoch_args(problem, csr=tuple(csr.values()))


def _bad_csr(kind):
    data, indices, indptr = make_problem(np.float64, sparse=True).csr
    indices, indptr = indices.copy(), indptr.copy()
    nnz = len(data)
    assert 0 < indptr[6] < nnz
    if kind == "decreasing":
        indptr[5] = nnz  # start and end intact, 5 -> 6 goes down
        return _sparse_args(indptr=indptr)
    if kind == "end":
        indptr[-1] = nnz - 1
        return _sparse_args(indptr=indptr)
    if kind == "start":
        indptr[0] = 1
        return _sparse_args(indptr=indptr)
    if kind == "empty":
        return _sparse_args(indptr=indptr[:0])
    if kind == "indices-length":
        return _sparse_args(indices=indices[:-1])
    if kind == "column-large":
        indices[3] = 4  # n_features is 4
        return _sparse_args(indices=indices)
    if kind == "column-negative":
        indices[3] = -1
        return _sparse_args(indices=indices)
    # 12 rows, well formed, against 13 targets
    return _sparse_args(
        data=data[: indptr[12]], indices=indices[: indptr[12]], indptr=indptr[:13]
    )


def test_valid_call_runs():
    # The baseline every bad-input case below changes in one place.
    loss_sum, step = _call(_epoch_args())
    assert np.isfinite(loss_sum) and step == 0
    _call(_sparse_args())


BAD_EPOCH_CALLS = {
    "work-too-small": (
        lambda: _epoch_args(work=np.zeros(make_problem(np.float64).plan.work_size - 1)),
        "workspace",
    ),
    "work-without-gather-buffer": (  # gather buffer at the end of the workspace
        lambda: _epoch_args(work=np.zeros(_replace_plan().gather_off)),
        "workspace",
    ),
    "params-too-short": (
        lambda: _epoch_args(
            params=np.zeros(make_problem(np.float64).plan.n_params - 1)
        ),
        "parameter buffer",
    ),
    "grad-length": (lambda: _epoch_args(grad=np.zeros(3)), "grad has length"),
    "state-length-sgd": (lambda: _epoch_args(state=np.zeros(3)), "state"),
    "state-length-adam": (  # adam keeps two moments: 2 n_params
        lambda: _epoch_args(solver=SOLVERS["adam"]),
        "state",
    ),
    "unknown-solver": (lambda: _epoch_args(solver=99), "solver"),
    "negative-solver": (lambda: _epoch_args(solver=-1), "solver"),
    "learning-rate-nan": (lambda: _epoch_args(learning_rate=np.nan), "finite"),
    "alpha-inf": (lambda: _epoch_args(alpha=np.inf), "finite"),
    "clip-negative": (lambda: _epoch_args(clip_norm=-1.0), "clip_norm"),
    "no-threads": (lambda: _epoch_args(n_threads=0), "n_threads"),
    "order-too-large": (
        lambda: _epoch_args(order=np.r_[np.arange(12), 13].astype(np.intp)),
        "out of range",
    ),
    "order-negative": (
        lambda: _epoch_args(order=np.r_[-1, np.arange(12)].astype(np.intp)),
        "out of range",
    ),
    "order-length": (
        lambda: _epoch_args(order=np.arange(12, dtype=np.intp)),
        "order has length",
    ),
    "shuffled-without-gather": (
        lambda: _epoch_args(make_problem(np.float64, gather=False)),
        "gather buffer",
    ),
    "Y-rows": (
        lambda: _epoch_args(Y=np.zeros((12, 3))),
        "Y must have shape",
    ),
    "Y-columns": (
        lambda: _epoch_args(Y=np.zeros((13, 2))),
        "Y must have shape",
    ),
    "sample-weight-length": (
        lambda: _epoch_args(sample_weight=np.ones(12)),
        "sample_weight",
    ),
    "X-features": (lambda: _epoch_args(X=np.zeros((13, 5))), "features"),
    "no-samples": (
        lambda: _epoch_args(
            X=np.zeros((0, 4)),
            Y=np.zeros((0, 3)),
            sample_weight=np.zeros(0),
            order=None,
        ),
        "at least one sample",
    ),
    "no-targets": (lambda: _epoch_args(Y=None), "targets"),
    "batch-larger-than-plan": (lambda: _epoch_args(batch_size=6), "batch_size"),
    "batch-zero": (lambda: _epoch_args(batch_size=0), "rows"),
    "plan-offsets-length": (
        lambda: _epoch_args(plan=_replace_plan(coef_off=np.zeros(1, np.intp))),
        "one entry per layer",
    ),
    "plan-coef-offset": (
        lambda: _epoch_args(plan=_replace_plan(coef_off=np.array([0, 60], np.intp))),
        "coefficients",
    ),
    "plan-bias-offset": (
        lambda: _epoch_args(plan=_replace_plan(bias_off=np.array([-1, 20], np.intp))),
        "intercepts",
    ),
    "plan-act-offset": (
        lambda: _epoch_args(plan=_replace_plan(act_off=np.array([0, 1000], np.intp))),
        "activations",
    ),
    "plan-delta-offset": (
        lambda: _epoch_args(plan=_replace_plan(delta_off=np.array([0, 1000], np.intp))),
        "deltas",
    ),
    "plan-zero-width": (
        lambda: _epoch_args(plan=_replace_plan(units=np.array([4, 0, 3], np.intp))),
        "positive",
    ),
    "plan-no-layer": (
        lambda: _epoch_args(plan=_replace_plan(units=np.array([4], np.intp))),
        "at least one layer",
    ),
    "plan-max-rows-over-workspace": (
        lambda: _epoch_args(plan=_replace_plan(max_rows=6), batch_size=6),
        "workspace",
    ),
    "softmax-one-unit": (
        lambda: _epoch_args(make_problem(np.float64, head="softmax-log_loss", n_out=1)),
        "softmax",
    ),
    "csr-indptr-decreasing": (lambda: _bad_csr("decreasing"), "indptr decreases"),
    "csr-indptr-end": (lambda: _bad_csr("end"), "malformed CSR"),
    "csr-indptr-start": (lambda: _bad_csr("start"), "malformed CSR"),
    "csr-indptr-empty": (lambda: _bad_csr("empty"), "malformed CSR"),
    "csr-indices-length": (lambda: _bad_csr("indices-length"), "malformed CSR"),
    "csr-column-too-large": (lambda: _bad_csr("column-large"), "column index"),
    "csr-column-negative": (lambda: _bad_csr("column-negative"), "column index"),
    "csr-rows-vs-Y": (lambda: _bad_csr("fewer-rows"), "Y must have shape"),
}


@pytest.mark.parametrize("case", list(BAD_EPOCH_CALLS))
def test_run_epoch_bad_input_raises(case):
    make_args, match = BAD_EPOCH_CALLS[case]
    args = make_args()
    params = args["params"].copy()
    with pytest.raises(ValueError, match=match):
        _call(args)
    np.testing.assert_array_equal(args["params"], params)  # nothing trained


@pytest.mark.parametrize("function", ["run_epoch", "loss_grad", "forward"])
def test_params_longer_than_plan_raises(function):
    # A longer buffer (grad and state to match) must not train silently with
    # its tail updated from whatever grad held; the twin raises too.
    problem = make_problem(np.float64, max_rows=13)
    n = problem.plan.n_params + 2
    params = np.r_[problem.params, 0.0, 0.0]
    work = np.zeros(problem.plan.work_size)
    with pytest.raises(ValueError, match="parameter buffer"):
        if function == "run_epoch":
            _call(
                _epoch_args(problem, params=params, grad=np.zeros(n), state=np.zeros(n))
            )
        elif function == "loss_grad":
            _epoch.loss_grad(
                problem.plan,
                problem.X,
                None,
                problem.Y,
                problem.sw,
                params,
                np.zeros(n),
                work,
                0.0,
            )
        else:
            _epoch.forward(
                problem.plan, problem.X, None, params, work, np.zeros(problem.Y.shape)
            )


def _loss_grad_call(problem, **changes):
    args = {
        "plan": problem.plan,
        "X": problem.X,
        "csr": problem.csr,
        "Y": problem.Y,
        "sample_weight": problem.sw,
        "params": problem.params.copy(),
        "grad": np.zeros(problem.plan.n_params),
        "work": np.zeros(problem.plan.work_size),
        "alpha": 0.0,
    }
    args.update(changes)
    return _epoch.loss_grad(*args.values())


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"grad": np.zeros(5)}, "grad has length"),
        ({"Y": np.zeros((13, 2))}, "Y must have shape"),
        ({"Y": None}, "targets"),
        ({"sample_weight": np.ones(14)}, "sample_weight"),
        ({"work": np.zeros(10)}, "workspace"),
        ({"params": np.zeros(10)}, "parameter buffer"),
        ({"X": np.zeros((13, 3))}, "features"),
    ],
    ids=["grad", "Y-shape", "no-Y", "sw", "work", "params", "X"],
)
def test_loss_grad_bad_input_raises(changes, match):
    problem = make_problem(np.float64, max_rows=13, gather=False)
    _loss_grad_call(problem)  # valid as it stands
    with pytest.raises(ValueError, match=match):
        _loss_grad_call(problem, **changes)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_loss_grad_needs_one_pass(sparse):
    # 13 samples do not fit a plan for 5 rows.
    problem = make_problem(np.float64, max_rows=5, gather=False, sparse=sparse)
    with pytest.raises(ValueError, match="do not fit"):
        _loss_grad_call(problem)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"out": np.zeros((13, 2))}, "out must have shape"),
        ({"out": np.zeros((12, 3))}, "out must have shape"),
        ({"work": np.zeros(3)}, "workspace"),
        ({"params": np.zeros(3)}, "parameter buffer"),
        ({"X": np.zeros((13, 5))}, "features"),
    ],
    ids=["out-columns", "out-rows", "work", "params", "X"],
)
def test_forward_bad_input_raises(changes, match):
    problem = make_problem(np.float64, gather=False)
    args = {
        "plan": problem.plan,
        "X": problem.X,
        "csr": None,
        "params": problem.params,
        "work": np.zeros(problem.plan.work_size),
        "out": np.zeros((13, 3)),
    }
    _epoch.forward(*args.values())  # valid as it stands
    args.update(changes)
    with pytest.raises(ValueError, match=match):
        _epoch.forward(*args.values())


@pytest.mark.parametrize(
    "values, finite",
    [
        ([], True),
        ([0.0, 1e30, -2.0], True),
        ([1.0, np.nan], False),
        ([np.inf, 0.0], False),
        ([0.0, 0.0, -np.inf], False),
    ],
    ids=["empty", "finite", "nan", "inf", "-inf-last"],
)
def test_all_finite(dtype, values, finite):
    a = np.array(values, dtype=dtype)
    assert _epoch.all_finite(a) is finite
    assert _reference.all_finite(a) is finite


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1055, 1056, 1057, 5000])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_a_bad_value_anywhere(dtype, n, bad):
    # Every position: in the vectorized sums' lanes, at a block's edge, in
    # the tail after the last whole group of lanes.
    rng = np.random.default_rng(n)
    a = (rng.uniform(-1, 1, n) * np.finfo(dtype).max).astype(dtype)
    assert _epoch.all_finite(a)
    positions = range(n) if n < 2000 else range(0, n, 7)
    for i in positions:
        b = a.copy()
        b[i] = bad
        assert not _epoch.all_finite(b), i


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize(
    "clip", [{"clip_norm": 0.05}, {"clip_value": 0.01},
             {"clip_norm": 0.05, "clip_value": 0.01}],
    ids=["norm", "value", "both"],
)
def test_run_epoch_clipping_equals_twin(dtype, clip, optimizer):
    problem = make_problem(dtype, (5, 3), "tanh", "softmax-log_loss", seed=5)
    orders = _orders(problem, True, np.random.RandomState(6))
    got = _epochs(_epoch, problem, orders, 5, optimizer, **clip)
    want = _epochs(_reference, problem, orders, 5, optimizer, **clip)
    _assert_epochs_match(got, want, dtype)
    unclipped = _epochs(_epoch, problem, orders, 5, optimizer)
    assert not np.allclose(got["params"], unclipped["params"])  # clipping acted


def _one_full_batch_sgd_step(problem, **clip):
    """One plain gradient step (momentum 0) over the whole data set."""
    params = problem.params.copy()
    grad, work, state = _buffers(problem, "sgd")
    settings = Settings(SOLVERS["sgd"], 0.5, 0.0, False, BETA_1, BETA_2, EPSILON,
                        alpha=0.01, **clip)
    _epoch.run_epoch(problem.plan, settings, problem.X, problem.csr, problem.Y,
                     problem.sw, None, problem.n_samples, params, grad, work,
                     state, 0)
    return params


@pytest.mark.parametrize(
    "clip, expected",
    [
        ({"clip_norm": 0.1}, lambda g: g * min(1, 0.1 / np.linalg.norm(g))),
        ({"clip_norm": 1e6}, lambda g: g),
        ({"clip_value": 0.02}, lambda g: np.clip(g, -0.02, 0.02)),
    ],
    ids=["norm", "norm-inactive", "value"],
)
def test_run_epoch_clipping_by_hand(clip, expected):
    # One batch of all 13 rows, sgd without momentum: params -= 0.5 clip(g),
    # with g the full-batch gradient that loss_grad computes independently.
    problem = make_problem(np.float64, (5,), "relu", "softmax-log_loss",
                           max_rows=13, gather=False, seed=7)
    g = np.empty_like(problem.params)
    _epoch.loss_grad(problem.plan, problem.X, problem.csr, problem.Y, problem.sw,
                     problem.params, g, np.empty(problem.plan.work_size), 0.01)
    assert np.linalg.norm(g) > 0.1 and np.abs(g).max() > 0.02  # clipping bites
    got = _one_full_batch_sgd_step(problem, **clip)
    assert_allclose(got, problem.params - 0.5 * expected(g), rtol=1e-12,
                    atol=1e-14)
# ---------------------------------------------------------------------------
# L1 penalty (elastic net with alpha)


def _loss_grad_l1(module, problem, alpha, l1, params=None):
    params = problem.params.copy() if params is None else params
    grad = np.full(problem.plan.n_params, np.nan, dtype=params.dtype)
    work = np.full(problem.plan.work_size, np.nan, dtype=params.dtype)
    loss = module.loss_grad(problem.plan, problem.X, problem.csr, problem.Y,
                            problem.sw, params, grad, work, alpha, l1)
    return loss, grad


@pytest.mark.parametrize("alpha", [0.0, 0.05])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_l1_gradient_matches_central_differences(sparse, alpha):
    l1 = 0.3
    problem = make_problem(np.float64, (4, 3), "tanh", "softmax-log_loss",
                           max_rows=9, n_samples=9, gather=False, sparse=sparse,
                           seed=8)
    coefs, _ = unpack(problem.params, [int(u) for u in problem.plan.units])
    h = 1e-6
    # Away from the kink of |w| at 0.
    assert min(np.abs(W).min() for W in coefs) > 10 * h
    _, grad = _loss_grad_l1(_epoch, problem, alpha, l1)
    numeric = np.empty_like(grad)
    for i in range(grad.size):
        plus, minus = problem.params.copy(), problem.params.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = (_loss_grad_l1(_epoch, problem, alpha, l1, plus)[0]
                      - _loss_grad_l1(_epoch, problem, alpha, l1, minus)[0]) / (2 * h)
    assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_l1_loss_and_gradient_by_hand(dtype):
    # The L1 term adds l1 / sw_sum * sum|W| to the loss and l1 / sw_sum *
    # sign(W) to the coefficient gradient only (0 where W == 0).
    problem = make_problem(dtype, (5,), "relu", "identity-squared_error", seed=2,
                           max_rows=13, gather=False)
    params = problem.params.copy()
    units = [int(u) for u in problem.plan.units]
    coefs, _ = unpack(params, units)
    coefs[0][0, :2] = 0
    loss0, grad0 = _loss_grad_l1(_epoch, problem, 0.01, 0.0, params.copy())
    loss1, grad1 = _loss_grad_l1(_epoch, problem, 0.01, 0.4, params.copy())
    sw_sum = float(problem.sw.astype(np.float64).sum())
    l1_norm = sum(np.abs(W.astype(np.float64)).sum() for W in coefs)
    assert_allclose(loss1 - loss0, 0.4 * l1_norm / sw_sum, rtol=RTOL[dtype])
    sign = np.zeros_like(params)
    n_coef = sum(W.size for W in coefs)
    sign[:n_coef] = np.sign(params[:n_coef])
    assert_allclose(grad1 - grad0, 0.4 / sw_sum * sign, rtol=1e-3,
                    atol=ATOL[dtype])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_run_epoch_l1_equals_twin(dtype, optimizer):
    problem = make_problem(dtype, (5, 3), "relu", "softmax-log_loss", seed=1)
    orders = _orders(problem, True, np.random.RandomState(2))
    solver, lr, nesterov = OPTIMIZERS[optimizer]
    results = []
    for module in (_epoch, _reference):
        params = problem.params.copy()
        grad, work, state = _buffers(problem, solver)
        step, losses = 0, []
        for order in orders:
            settings = Settings(SOLVERS[solver], lr, MOMENTUM, nesterov, BETA_1,
                                BETA_2, EPSILON, alpha=0.01, l1=0.2)
            loss_sum, step = module.run_epoch(
                problem.plan, settings, problem.X, problem.csr, problem.Y,
                problem.sw, order, 5, params, grad, work, state, step)
            losses.append(loss_sum)
        results.append({"losses": losses, "step": step, "params": params,
                        "grad": grad, "state": state})
    _assert_epochs_match(*results, dtype)
    without = _epochs(_epoch, problem, orders, 5, optimizer)
    assert not np.allclose(results[0]["params"], without["params"])


# ---------------------------------------------------------------------------
# Inverted dropout on hidden layers


def _dropout_problem(dtype, hidden_act, dropout, sparse=False, **kwargs):
    problem = make_problem(dtype, (6, 5), hidden_act, "softmax-log_loss",
                           sparse=sparse, gather=not sparse, **kwargs)
    plan = make_plan(problem.plan.units, hidden_act, "softmax", "log_loss",
                     problem.plan.max_rows, not sparse, dropout)
    return dataclasses.replace(problem, plan=plan)


def _epochs_seeded(module, problem, orders, seeds, optimizer="adam"):
    solver, lr, nesterov = OPTIMIZERS[optimizer]
    params = problem.params.copy()
    grad, work, state = _buffers(problem, solver)
    step, losses = 0, []
    for order, seed in zip(orders, seeds):
        settings = Settings(SOLVERS[solver], lr, MOMENTUM, nesterov, BETA_1,
                            BETA_2, EPSILON, alpha=0.01, l1=0.0)
        loss_sum, step = module.run_epoch(
            problem.plan, settings, problem.X, problem.csr, problem.Y, problem.sw,
            order, 5, params, grad, work, state, step, seed=seed)
        losses.append(loss_sum)
    return {"losses": losses, "step": step, "params": params, "grad": grad,
            "state": state}


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("dropout", [0.4, [0.5, 0.0], [0.0, 0.25]], ids=str)
@pytest.mark.parametrize("hidden_act", ["relu", "tanh", "gelu"])
def test_run_epoch_dropout_equals_twin(dtype, hidden_act, dropout, sparse):
    problem = _dropout_problem(dtype, hidden_act, dropout, sparse, seed=1)
    orders = _orders(problem, True, np.random.RandomState(2))
    seeds = [2**63 + 5, 17]
    got = _epochs_seeded(_epoch, problem, orders, seeds)
    want = _epochs_seeded(_reference, problem, orders, seeds)
    _assert_epochs_match(got, want, dtype)
    # Dropout changes the trajectory; another seed changes it again.
    plain = _epochs(_epoch, problem, orders, 5, "adam")
    assert not np.allclose(got["params"], plain["params"])
    other = _epochs_seeded(_epoch, problem, orders, [1, 2])
    assert not np.allclose(got["params"], other["params"])


def _loss_grad_seeded(problem, params, seed):
    grad = np.full(problem.plan.n_params, np.nan)
    work = np.full(problem.plan.work_size, np.nan)
    loss = _epoch.loss_grad(problem.plan, problem.X, problem.csr, problem.Y,
                            problem.sw, params, grad, work, 0.05, 0.0, seed)
    return loss, grad


@pytest.mark.parametrize("hidden_act", ["tanh", "logistic", "gelu", "softplus"])
def test_dropout_gradient_matches_central_differences(hidden_act):
    # With a fixed mask (a fixed seed) the loss is a smooth function of the
    # parameters; its gradient is what backward computes.
    problem = _dropout_problem(np.float64, hidden_act, [0.5, 0.3], max_rows=9,
                               n_samples=9, seed=8)
    seed = 99
    _, grad = _loss_grad_seeded(problem, problem.params.copy(), seed)
    h = 1e-6
    numeric = np.empty_like(grad)
    for i in range(grad.size):
        plus, minus = problem.params.copy(), problem.params.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = (_loss_grad_seeded(problem, plus, seed)[0]
                      - _loss_grad_seeded(problem, minus, seed)[0]) / (2 * h)
    assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    # Another mask, another gradient.
    other = _loss_grad_seeded(problem, problem.params.copy(), seed + 1)[1]
    assert not np.allclose(grad, other)
    want = _reference.loss_grad(problem.plan, problem.X, problem.csr, problem.Y,
                                problem.sw, problem.params.copy(),
                                np.empty_like(grad), None, 0.05, 0.0, seed)
    assert_allclose(_loss_grad_seeded(problem, problem.params.copy(), seed)[0],
                    want, rtol=1e-12)


def test_forward_ignores_dropout(dtype):
    problem = _dropout_problem(dtype, "relu", 0.5)
    plain = make_plan(problem.plan.units, "relu", "softmax", "log_loss", 5, False)
    outs = []
    for plan in (problem.plan, plain):
        out = np.empty((problem.n_samples, 3), dtype=dtype)
        _epoch.forward(plan, problem.X, None, problem.params,
                       np.empty(plan.work_size, dtype), out)
        outs.append(out)
    np.testing.assert_array_equal(*outs)
