"""Benchmark fastbp against its NumPy twin, scikit-learn and (if installed) PyTorch.

    python bench/run.py [--quick] [--threads 1 2] [--out DIR] [--only NAME ...]

Every contender trains the same network for the same number of epochs in one
process, interleaved (A B C A B C ...), with BLAS/OpenMP threads pinned to the
same count. Times are medians over repeats; ratios are medians of per-repeat
ratios. Writes results.md, results.json and results.png into DIR (default
bench/results/). bench/README.md says what each column means.
"""

import argparse
import gc
import io
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from statistics import median

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn import neural_network as sk_nn
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import shuffle
from threadpoolctl import threadpool_limits

try:
    import fastbp
except ImportError:  # run from a checkout without PYTHONPATH
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import fastbp

HERE = Path(__file__).resolve().parent
SEED = 0
GEMM_N = (2048, 1024)  # matrix size of the peak measurement: full, quick
REPEATS = (5, 3)  # full, quick
warnings.simplefilter("ignore", ConvergenceWarning)
warnings.filterwarnings("ignore", message=".*[Ss]parse.*")  # torch beta notices
# scikit-learn clips batch_size to a partial_fit chunk of 100 rows, and says so.
warnings.filterwarnings("ignore", message="Got `batch_size`")


# ----------------------------------------------------------------------------
# data


def digits(n):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def classification(d, dtype=np.float64):
    def make(n):
        X, y = make_classification(
            n_samples=n, n_features=d, n_informative=d // 2, random_state=SEED
        )
        return X.astype(dtype), y

    return make


def regression(n, d=40):
    X, y = make_regression(n_samples=n, n_features=d, noise=10.0, random_state=SEED)
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def smooth_multiclass(n, d=20):
    """Noisy 3-class data (10% flipped labels), standardized: no separation."""
    X, y = make_classification(n_samples=n, n_features=d, n_informative=10,
                               n_classes=3, flip_y=0.1, random_state=SEED)
    return (X - X.mean(0)) / X.std(0), y


def sparse_binary(n, d=5000, density=0.01):
    X = sp.random(n, d, density=density, format="csr", random_state=SEED)
    score = X @ np.random.RandomState(SEED).randn(d)
    return X, (score > np.median(score)).astype(int)


# ----------------------------------------------------------------------------
# workloads: one row each


@dataclass
class Workload:
    """One benchmark row; (full, quick) pairs give its size in each mode."""

    name: str
    data: Callable  # n_samples -> (X, y)
    n: tuple  # samples
    epochs: tuple
    task: str  # "clf" or "reg"
    params: dict  # MLP parameters; the shared ones come from estimator_params
    numpy_epochs: int | None = None  # the NumPy twin runs fewer, timed per epoch
    predict: dict | None = None  # a predict workload: fit_rows, single_calls
    solvers: dict | None = None  # a time-to-target workload: solver -> budget
    sizes: bool = False  # per-call times of predict etc. and partial_fit by size


def sgd(batch, hidden=(64,), **kw):
    return {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True,
            "batch_size": batch, "hidden_layer_sizes": hidden, **kw}


def adam(batch, hidden=(64,), **kw):
    return {"solver": "adam", "batch_size": batch, "hidden_layer_sizes": hidden,
            **kw}


# Iterations each solver may take to find its best loss (adam: full-batch
# epochs at learning_rate_init=0.01, so all three minimize the same function).
SOLVER_BUDGETS = {"newton": 100, "lbfgs": 2000, "adam": 2000}
LOOSE, TIGHT = 1e-3, 1e-6  # relative slack of the two target losses

WORKLOADS = [
    Workload("digits adam b200", digits, (1797, 1797), (20, 5), "clf",
             adam(200, (100,))),
    Workload("sgd b32", classification(50), (20000, 4000), (5, 1), "clf", sgd(32)),
    Workload("sgd b32 f32", classification(50, np.float32), (20000, 4000), (5, 1),
             "clf", sgd(32)),
    Workload("online sgd b1", classification(20), (5000, 500), (2, 1), "clf",
             sgd(1, (32,)), numpy_epochs=1),
    Workload("wide adam b256", classification(256), (20000, 2000), (3, 1), "clf",
             adam(256, (512, 256))),
    Workload("wide adam b256 f32", classification(256, np.float32), (20000, 2000),
             (3, 1), "clf", adam(256, (512, 256))),
    Workload("regression tanh b64", regression, (20000, 4000), (5, 1), "reg",
             adam(64, (128, 64), activation="tanh")),
    Workload("sparse 1% b64", sparse_binary, (20000, 1500), (2, 1), "clf", adam(64)),
    Workload("predict", classification(50), (100000, 20000), (5, 2), "clf",
             adam(200), predict={"fit_rows": 2000, "single_calls": 200}),
    # Every call at every size, so a cliff (issue 12) cannot come back unseen.
    Workload("sizes: digits default", digits, (1797, 1797), (20, 5), "clf",
             adam(200, (100,)), sizes=True),
    # fastbp's full-batch solvers on one objective: iterations budgets below.
    Workload("to target: logistic regression", smooth_multiclass, (2000, 2000),
             (0, 0), "clf", {"hidden_layer_sizes": (), "alpha": 1.0},
             solvers=SOLVER_BUDGETS),
    Workload("to target: (8,) tanh", smooth_multiclass, (2000, 2000), (0, 0),
             "clf", {"hidden_layer_sizes": (8,), "activation": "tanh",
                     "alpha": 1.0}, solvers=SOLVER_BUDGETS),
]


def estimator_params(w, epochs):
    """Exactly `epochs` epochs (no early stop), the same seed for everyone."""
    return {**w.params, "max_iter": epochs, "tol": 0.0,
            "n_iter_no_change": 10**9, "random_state": SEED}


def epochs_for(w, name, quick):
    epochs = w.epochs[quick]
    if name == "numpy" and w.numpy_epochs:
        epochs = min(epochs, w.numpy_epochs)
    return epochs


# ----------------------------------------------------------------------------
# contenders: each makes an estimator with fit(X, y), loss_, n_iter_, predict(X)


def load_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def glorot(n_features, hidden, n_out, activation, rng, dtype):
    """scikit-learn's Glorot-uniform (W, b) per layer, drawn in its order."""
    units = [n_features, *hidden, n_out]
    factor = 2.0 if activation == "logistic" else 6.0
    layers = []
    for fan_in, fan_out in pairwise(units):
        bound = np.sqrt(factor / (fan_in + fan_out))
        W = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype)
        b = rng.uniform(-bound, bound, fan_out).astype(dtype)
        layers.append((W, b))
    return layers


def epoch_orders(n, epochs, rng):
    """Each epoch's sample order, drawn from rng as scikit-learn draws it."""
    order = np.arange(n)
    for _ in range(epochs):
        order = shuffle(order, random_state=rng)
        yield order


class TorchMLP:
    """The same MLP in PyTorch CPU: a plain minibatch loop, the same optimizer.

    Initial weights and each epoch's sample order are drawn from the seed as
    scikit-learn draws them, and the loss with its L2 term is scikit-learn's,
    so the final loss is comparable. PyTorch's Adam adds epsilon after the
    bias correction, so Adam runs drift slightly from scikit-learn's.
    Tensors keep X's dtype (float64 unless the workload is float32).
    """

    def __init__(self, task, hidden_layer_sizes, activation="relu", solver="adam",
                 alpha=1e-4, batch_size=200, learning_rate_init=1e-3,
                 max_iter=200, momentum=0.9, nesterovs_momentum=True,
                 random_state=0, **ignored):
        self.task, self.hidden, self.activation = task, hidden_layer_sizes, activation
        self.solver, self.alpha, self.batch_size = solver, alpha, batch_size
        self.lr, self.max_iter, self.random_state = (learning_rate_init, max_iter,
                                                     random_state)
        self.momentum, self.nesterov = momentum, nesterovs_momentum

    def _targets(self, y):
        """Targets as tensors and the matching data loss, as scikit-learn's."""
        torch, F = self.torch, self.torch.nn.functional
        if self.task == "reg":
            self.n_out = 1
            Y = np.asarray(y, self.dtype).reshape(-1, 1)
            return torch.from_numpy(Y), lambda out, t: 0.5 * F.mse_loss(out, t)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) == 2:
            self.n_out = 1
            Y = codes.astype(self.dtype).reshape(-1, 1)
            return torch.from_numpy(Y), F.binary_cross_entropy_with_logits
        self.n_out = len(self.classes_)
        return torch.from_numpy(codes.astype(np.int64)), F.cross_entropy

    def _init(self, n_features, rng):
        """scikit-learn's Glorot-uniform init, drawn in its order."""
        self.weights, self.biases = [], []
        for W, b in glorot(n_features, self.hidden, self.n_out, self.activation,
                           rng, self.dtype):
            self.weights.append(self.torch.from_numpy(W).requires_grad_())
            self.biases.append(self.torch.from_numpy(b).requires_grad_())

    def _forward(self, A):
        return self._forward_with(self.weights, self.biases, A)

    def _rows(self, X, idx):
        torch = self.torch
        if not sp.issparse(X):
            return X.index_select(0, torch.from_numpy(idx))
        B = X[idx]
        return torch.sparse_csr_tensor(
            torch.from_numpy(B.indptr.astype(np.int64)),
            torch.from_numpy(B.indices.astype(np.int64)),
            torch.from_numpy(B.data), size=B.shape)

    def fit(self, X, y):
        torch = self.torch = load_torch()
        self.dtype = X.dtype
        X = X.tocsr() if sp.issparse(X) else torch.from_numpy(X)
        Y, data_loss = self._targets(y)
        rng = np.random.RandomState(self.random_state)
        self._init(X.shape[1], rng)
        params = self.weights + self.biases
        if self.solver == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                  nesterov=self.nesterov)
        else:
            opt = torch.optim.Adam(params, lr=self.lr, eps=1e-8)
        n, batch = X.shape[0], min(self.batch_size, X.shape[0])
        batch_loss = self._batch_loss(data_loss, X, Y, batch)
        self.t_ = 0  # rows trained on: the equal-work check
        for order in epoch_orders(n, self.max_iter, rng):
            total = 0.0
            for start in range(0, n, batch):  # the last, partial batch too
                idx = order[start:start + batch]
                loss = batch_loss(self.weights, self.biases, self._rows(X, idx),
                                  Y.index_select(0, torch.from_numpy(idx)))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                self.t_ += len(idx)
            self.loss_ = total / n
        self.n_iter_ = self.max_iter
        return self

    def _batch_loss(self, data_loss, X, Y, batch):
        """(weights, biases, X rows, Y rows) -> scikit-learn's minibatch loss."""
        return _torch_loss(self._forward_with, data_loss, self.alpha)

    def _forward_with(self, weights, biases, A):
        torch = self.torch
        act = {"relu": torch.relu, "tanh": torch.tanh, "logistic": torch.sigmoid,
               "identity": lambda Z: Z}[self.activation]
        for i, (W, b) in enumerate(zip(weights, biases)):
            A = A @ W + b
            if i < len(weights) - 1:
                A = act(A)
        return A

    def predict(self, X):
        with self.torch.no_grad():
            X = np.ascontiguousarray(X, self.dtype)
            out = self._forward(self.torch.from_numpy(X)).numpy()
        if self.task == "reg":
            return out.ravel()
        if self.n_out == 1:
            return self.classes_[(out.ravel() > 0).astype(int)]
        return self.classes_[out.argmax(1)]


def _torch_loss(forward, data_loss, alpha):
    """scikit-learn's minibatch loss, L2 term included, as a function of the
    weights: (weights, biases, X rows, Y rows) -> loss."""
    def loss(weights, biases, A, T):
        l2 = sum((W * W).sum() for W in weights)
        return (data_loss(forward(weights, biases, A), T)
                + 0.5 * alpha * l2 / A.shape[0])
    return loss


_TORCH_COMPILED = {}  # (task, outputs, activation, alpha, threads) -> compiled loss


class TorchCompileMLP(TorchMLP):
    """TorchMLP whose minibatch loss goes through ``torch.compile``.

    The forward pass and the loss are one compiled graph (Inductor, C++ on
    the CPU); AOTAutograd compiles its backward with it. The optimizer step
    stays ``torch.optim``'s (foreach), as in the usual ``torch.compile(model)``
    recipe. ``dynamic=False``: one graph for the full minibatch and one for the
    last, partial one. Both are compiled before the epochs, on copies of the
    weights, and ``compile_time_`` (seconds) tells the bench what to subtract
    from the fit's time. The compiled function is shared by every fit of the
    same network and thread count, so only the first fit pays the compiler.
    """

    def _batch_loss(self, data_loss, X, Y, batch):
        torch = self.torch
        for limit in ("cache_size_limit", "recompile_limit"):
            if hasattr(torch._dynamo.config, limit):  # every workload's shapes
                setattr(torch._dynamo.config, limit, 256)
        key = (self.task, self.n_out, self.activation, self.alpha,
               torch.get_num_threads())
        t0 = time.perf_counter()  # the compiler's lazy imports count as compiling
        if key not in _TORCH_COMPILED:
            _TORCH_COMPILED[key] = torch.compile(
                _torch_loss(self._forward_with, data_loss, self.alpha),
                dynamic=False)
        fn = _TORCH_COMPILED[key]
        n = X.shape[0]
        for size in {batch, n % batch} - {0}:  # warm-up: compiles, not timed
            idx = np.arange(size)
            copies = [[p.detach().clone().requires_grad_() for p in ps]
                      for ps in (self.weights, self.biases)]
            fn(*copies, self._rows(X, idx),
               Y.index_select(0, torch.from_numpy(idx))).backward()
        self.compile_time_ = time.perf_counter() - t0
        return fn


def load_jax(threads=None):
    """JAX with float64 enabled, or None.

    XLA's CPU threads are fixed when JAX first starts, and XLA_FLAGS has no
    thread count: the first call with threads=1 turns the Eigen pool off
    (``--xla_cpu_multi_thread_eigen=false``: one thread runs each op);
    any other count leaves XLA's default, every core.
    (``intra_op_parallelism_threads=1``, often quoted beside that flag, is not
    an XLA flag: with its dashes XLA aborts on it, without them it is
    ignored.)
    """
    if threads == 1 and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false").strip()
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax


_JAX_EPOCHS = {}  # everything the epoch's graph depends on -> compiled epoch


class JaxMLP:
    """The same MLP as a JAX program: one ``jax.jit``-compiled epoch.

    The epoch is one XLA executable: ``lax.scan`` over the full minibatches
    (each a gather of its rows, ``jax.value_and_grad`` of scikit-learn's
    minibatch loss with its L2 term, and the update), then the last, partial
    minibatch as one more step of its own shape, so every epoch trains on all
    n rows, as fastbp does. Initial weights and each epoch's order are drawn
    as scikit-learn draws them (the order goes in as an argument); the update
    is scikit-learn's own formula (Adam with epsilon after the bias-corrected
    step size, SGD with Nesterov momentum), so the trajectory follows
    scikit-learn's up to rounding and XLA's reassociation. The epoch is
    compiled ahead of time (``lower().compile()``) before the first epoch;
    ``compile_time_`` is those seconds, which the bench subtracts from the
    fit's time, and fits of the same shapes reuse the executable.
    """

    def __init__(self, task, hidden_layer_sizes, activation="relu", solver="adam",
                 alpha=1e-4, batch_size=200, learning_rate_init=1e-3,
                 max_iter=200, momentum=0.9, nesterovs_momentum=True,
                 random_state=0, beta_1=0.9, beta_2=0.999, epsilon=1e-8, **ignored):
        self.task, self.hidden, self.activation = task, hidden_layer_sizes, activation
        self.solver, self.alpha, self.batch_size = solver, alpha, batch_size
        self.lr, self.max_iter, self.random_state = (learning_rate_init, max_iter,
                                                     random_state)
        self.momentum, self.nesterov = momentum, nesterovs_momentum
        self.adam = (beta_1, beta_2, epsilon)

    def _targets(self, y):
        """Targets and the kind of loss: 'reg', 'binary' or 'multi'."""
        if self.task == "reg":
            self.n_out = 1
            return np.asarray(y, self.dtype).reshape(-1, 1), "reg"
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) == 2:
            self.n_out = 1
            return codes.astype(self.dtype).reshape(-1, 1), "binary"
        self.n_out = len(self.classes_)
        return codes.astype(np.int32), "multi"

    def _forward(self, params, A):
        jnp = self.jax.numpy
        act = {"relu": self.jax.nn.relu, "tanh": jnp.tanh,
               "logistic": self.jax.nn.sigmoid, "identity": lambda Z: Z}
        for i, (W, b) in enumerate(params):
            A = A @ W + b
            if i < len(params) - 1:
                A = act[self.activation](A)
        return A

    def _loss(self, kind, params, A, T):
        jax, jnp = self.jax, self.jax.numpy
        Z = self._forward(params, A)
        if kind == "reg":
            data = 0.5 * jnp.mean((Z - T) ** 2)
        elif kind == "binary":  # log loss of sigmoid(Z), from the logits
            data = jnp.mean(jnp.logaddexp(0.0, Z) - T * Z)
        else:
            data = jnp.mean(jax.nn.logsumexp(Z, axis=1)
                            - jnp.take_along_axis(Z, T[:, None], axis=1)[:, 0])
        l2 = sum((W * W).sum() for W, _ in params)
        return data + 0.5 * self.alpha * l2 / A.shape[0]

    def _update(self, params, state, grads):
        """scikit-learn's Adam or SGD (Nesterov) step, constant learning rate."""
        jnp, tree = self.jax.numpy, self.jax.tree_util.tree_map
        lr = self.lr
        if self.solver == "sgd":
            mom = self.momentum
            vel = tree(lambda v, g: mom * v - lr * g, state, grads)
            step = (tree(lambda v, g: mom * v - lr * g, vel, grads)
                    if self.nesterov else vel)
            return tree(lambda p, s: p + s, params, step), vel
        b1, b2, eps = self.adam
        t, m, v = state
        t = t + 1
        m = tree(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = tree(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        lr_t = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = tree(lambda p, m, v: p - lr_t * m / (jnp.sqrt(v) + eps),
                      params, m, v)
        return params, (t, m, v)

    def _epoch(self, kind, n, batch):
        jax = self.jax
        full, rest = divmod(n, batch)
        grad = jax.value_and_grad(partial(self._loss, kind))

        def epoch(params, state, X, Y, order):
            def step(carry, idx):
                params, state = carry
                loss, g = grad(params, X[idx], Y[idx])
                return self._update(params, state, g), loss * idx.shape[0]

            carry, losses = jax.lax.scan(
                step, (params, state), order[:full * batch].reshape(full, batch))
            total = losses.sum()
            if rest:  # the last, partial minibatch: one more step, its own shape
                carry, last = step(carry, order[full * batch:])
                total = total + last
            return carry[0], carry[1], total / n

        return epoch

    def fit(self, X, y):
        jax = self.jax = load_jax()
        jnp = jax.numpy
        self.dtype = X.dtype
        T, kind = self._targets(y)
        rng = np.random.RandomState(self.random_state)
        params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in glorot(
            X.shape[1], self.hidden, self.n_out, self.activation, rng, self.dtype)]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        state = (zeros if self.solver == "sgd"
                 else (jnp.zeros((), self.dtype), zeros, zeros))
        n, batch = X.shape[0], min(self.batch_size, X.shape[0])
        Xj, Tj = jnp.asarray(X), jnp.asarray(T)
        order0 = jnp.zeros(n, jnp.int32)
        key = (kind, self.activation, self.solver, self.alpha, self.lr,
               self.momentum, self.nesterov, self.adam, n, batch, X.shape,
               X.dtype.name, T.shape, T.dtype.name, tuple(self.hidden), self.n_out)
        t0 = time.perf_counter()
        if key not in _JAX_EPOCHS:
            _JAX_EPOCHS[key] = jax.jit(self._epoch(kind, n, batch)).lower(
                params, state, Xj, Tj, order0).compile()
        self.compile_time_ = time.perf_counter() - t0
        epoch = _JAX_EPOCHS[key]
        self.t_ = 0  # rows trained on: the equal-work check
        for order in epoch_orders(n, self.max_iter, rng):
            params, state, loss = epoch(params, state, Xj, Tj,
                                        jnp.asarray(order, jnp.int32))
            # Wait: no drawing the next order while XLA runs this epoch, so
            # one thread works at a time, as in the other contenders.
            loss.block_until_ready()
            self.t_ += n  # full * batch + rest rows, by construction
        self.loss_ = float(loss)  # waits for the last epoch
        self.params_, self.n_iter_ = params, self.max_iter
        return self

    def predict(self, X):
        out = np.asarray(self._forward(self.params_, self.jax.numpy.asarray(
            np.ascontiguousarray(X, self.dtype))))
        if self.task == "reg":
            return out.ravel()
        if self.n_out == 1:
            return self.classes_[(out.ravel() > 0).astype(int)]
        return self.classes_[out.argmax(1)]


def make_fastbp(w, params, backend="cython"):
    cls = {"clf": fastbp.MLPClassifier, "reg": fastbp.MLPRegressor}[w.task]
    # n_jobs=-1: the threads threadpool_limits allows (the run's thread count).
    return cls(**params, backend=backend, n_jobs=-1)


CONTENDERS = {
    "fastbp": make_fastbp,
    "numpy": lambda w, params: make_fastbp(w, params, backend="numpy"),
    "sklearn": lambda w, params: {"clf": sk_nn.MLPClassifier,
                                  "reg": sk_nn.MLPRegressor}[w.task](**params),
    "torch": lambda w, params: TorchMLP(w.task, **params),
    "torch.compile": lambda w, params: TorchCompileMLP(w.task, **params),
    "jax": lambda w, params: JaxMLP(w.task, **params),
}
# Contenders that only train (the predict workload leaves them out: the
# serving peer is onnxruntime, in the sizes section) and only dense X.
TRAIN_ONLY = {"torch.compile", "jax"}
MEMORY_CONTENDERS = ["fastbp", "numpy", "sklearn"]


# ----------------------------------------------------------------------------
# measuring


# Seconds of idle before each timed fit: OpenBLAS's pthreads workers spin
# for about 0.1 s (2^28 TSC ticks) after every multithreaded BLAS call,
# and spinning workers take the cores from whoever runs next. Measured on 2
# cores: a 10-epoch digits fit on 2 threads took 13 ms per epoch right after
# a 2-thread matmul, 3.3 ms without one. The pause gives every contender an
# idle machine, as the contender before it would otherwise decide its time.
SETTLE = 0.25


def timed(fn, *args):
    """(seconds, result) of one call, with the cyclic GC off as in timeit."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn(*args)
        return time.perf_counter() - t0, out
    finally:
        gc.enable()


def gemm_peak(dtype, n, repeats=3):
    """Best FLOP/s of an n x n NumPy matmul at the current thread limit."""
    rng = np.random.RandomState(SEED)
    A, B = (rng.rand(n, n).astype(dtype) for _ in range(2))
    out = np.empty_like(A)
    np.matmul(A, B, out=out)  # warm-up
    return 2.0 * n**3 / min(timed(np.matmul, A, B, out)[0] for _ in range(repeats))


def layer_units(w, X, y):
    n_out = len(np.unique(y)) if w.task == "clf" else 1
    return [X.shape[1], *w.params["hidden_layer_sizes"], 1 if n_out <= 2 else n_out]


def flops(X, units, per_sample):
    """per_sample * sum(fan_in * fan_out) * n_samples; sparse X: nnz, not n*d."""
    pairs = [a * b for a, b in pairwise(units)]
    first = X.nnz * units[1] if sp.issparse(X) else X.shape[0] * pairs[0]
    return per_sample * (first + X.shape[0] * sum(pairs[1:]))


def bench_train(w, X, y, names, repeats, quick):
    """Interleaved fits: seconds per epoch per repeat, final losses, epochs."""
    epochs = {name: epochs_for(w, name, quick) for name in names}
    compile_s = {}  # the longest compilation per contender (any fit)
    for name in names:  # warm-up: lazy imports and first-call costs
        est = CONTENDERS[name](w, estimator_params(w, 1)).fit(X[:256], y[:256])
        if hasattr(est, "compile_time_"):  # it may compile the timed fit's graphs
            compile_s[name] = est.compile_time_
    secs, loss, busy = {name: [] for name in names}, {}, {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            est = CONTENDERS[name](w, estimator_params(w, epochs[name]))
            time.sleep(SETTLE)
            cpu = time.process_time()
            t = timed(est.fit, X, y)[0]
            # Cores the fit kept busy: the thread pinning, checked.
            busy[name].append((time.process_time() - cpu) / t)
            # Compiled contenders compile (and warm up) inside fit, before
            # their first epoch: that time is reported, not counted.
            warm = getattr(est, "compile_time_", None)
            if warm is not None:
                compile_s[name] = max(compile_s.get(name, 0.0), warm)
                t -= warm
            secs[name].append(t / epochs[name])
            assert est.n_iter_ == epochs[name], (w.name, name, est.n_iter_)
            # Equal work: every row of every epoch, the last partial batch too.
            assert est.t_ == epochs[name] * X.shape[0], (w.name, name, est.t_)
            loss[name] = float(est.loss_)
    return secs, loss, epochs, compile_s, {k: median(v) for k, v in busy.items()}


def bench_predict(w, X, y, names, repeats, quick):
    """Interleaved bulk predict seconds and single-row latencies."""
    rows, calls = w.predict["fit_rows"], w.predict["single_calls"]
    params = estimator_params(w, w.epochs[quick])
    models = {name: CONTENDERS[name](w, params).fit(X[:rows], y[:rows])
              for name in names}
    for model in models.values():  # warm-up
        model.predict(X[:1000])
    bulk, single = {name: [] for name in names}, {name: [] for name in names}
    for _ in range(repeats):
        for name, model in models.items():
            time.sleep(SETTLE)
            bulk[name].append(timed(model.predict, X)[0])
            single[name] += [timed(model.predict, X[:1])[0] for _ in range(calls)]
    labels = models["fastbp"].predict(X)
    agree = {name: float(np.mean(m.predict(X) == labels))
             for name, m in models.items()}
    return bulk, single, agree


# Every power of two up to the cores (at least 1 and 2).
POWERS_OF_TWO = sorted({1, 2} | {2**k for k in range(8) if 2**k <= (os.cpu_count() or 1)})
SIZES = (1, 10, 100, 1000, 100000)
CHUNKS = (100, 1000)
# Calls timed per contender and repeat at each size: about 20k rows' worth.
CALL_ROWS = 20000
SIZE_METHODS = ("predict", "predict_proba", "score", "transform")


def _call_times(calls, repeats, settle=0.0):
    """Interleaved per-call seconds: name -> [median per repeat]."""
    out = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, n_calls) in calls.items():
            time.sleep(settle)
            t = [timed(fn)[0] for _ in range(n_calls)]
            out[name].append(median(t))
    return out


def bench_sizes(w, X, y, names, repeats, quick):
    """Per-call seconds of predict, predict_proba, score and transform at
    every size of SIZES, and of partial_fit on CHUNKS-row chunks, for fastbp
    and scikit-learn. scikit-learn's MLP has no transform: its predict_proba
    (the same pass and one layer more) stands in."""
    params = estimator_params(w, w.epochs[quick])
    names = [n for n in names if n in ("fastbp", "sklearn")]
    models = {n: CONTENDERS[n](w, params).fit(X, y) for n in names}
    reps = np.resize(np.arange(len(X)), max(SIZES))  # rows repeated to 100000
    Xb, yb = X[reps], y[reps]
    rows = []
    for size in SIZES:
        Xs, ys = Xb[:size], yb[:size]
        n_calls = max(3, min(200, CALL_ROWS // size))
        for method in SIZE_METHODS:
            calls = {}
            for n, m in models.items():
                attr = method if hasattr(m, method) else "predict_proba"
                fn = getattr(m, attr)
                args = (Xs, ys) if method == "score" else (Xs,)
                fn(*args)  # warm-up
                calls[n] = ((lambda fn=fn, args=args: fn(*args)), n_calls)
            # Settled: scikit-learn's threaded OpenBLAS calls leave workers
            # spinning on the cores the next contender's calls need.
            rows.append((f"{method} {size} rows",
                         _call_times(calls, repeats, settle=SETTLE)))
    for chunk in CHUNKS:
        calls = {}
        for n in names:
            m = CONTENDERS[n](w, params).fit(X, y)
            stream = iter(range(10**9))

            def step(m=m, stream=stream):
                i = next(stream) * chunk % (len(Xb) - chunk)
                m.partial_fit(Xb[i : i + chunk], yb[i : i + chunk])

            step()
            calls[n] = (step, max(3, min(50, CALL_ROWS // chunk)))
        rows.append((f"partial_fit {chunk}-row chunks",
                     _call_times(calls, repeats, settle=SETTLE)))
    return rows


ONNX_SIZES = (1, 100, 100000)


def load_onnxruntime():
    """onnxruntime, or None; fastbp.to_onnx also needs onnx."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def bench_onnx(w, X, y, threads, repeats, quick):
    """Per-call seconds of predict and predict_proba: fastbp against
    onnxruntime running the same model exported with fastbp.to_onnx, in
    float32 and float64 (the model fitted on X in that dtype), at ONNX_SIZES
    rows; onnxruntime's intra-op pool has the run's thread count. Outputs are
    checked equal (labels exactly, probabilities to rounding) first."""
    ort = load_onnxruntime()
    params = estimator_params(w, w.epochs[quick])
    reps = np.resize(np.arange(len(X)), max(ONNX_SIZES))
    rows = []
    for dtype in (np.float32, np.float64):
        Xd = X.astype(dtype)
        model = make_fastbp(w, params).fit(Xd, y)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(
            fastbp.to_onnx(model, dtype=dtype).SerializeToString(), opts,
            providers=["CPUExecutionProvider"])
        tol = 1e-5 if dtype == np.float32 else 1e-12
        for size in ONNX_SIZES:
            Xs = np.ascontiguousarray(Xd[reps[:size]])
            for method, output in (("predict", "label"),
                                   ("predict_proba", "probabilities")):
                ours = getattr(model, method)

                def theirs(Xs=Xs, output=output):
                    return sess.run([output], {"X": Xs})[0]

                a, b = ours(Xs), theirs()
                if method == "predict":
                    assert np.array_equal(a, b), (method, size, dtype)
                else:
                    assert np.allclose(a, b, rtol=tol, atol=tol), (method, size, dtype)
                n_calls = max(3, min(200, CALL_ROWS // size))
                secs = _call_times({"fastbp": (lambda f=ours, Xs=Xs: f(Xs), n_calls),
                                    "onnxruntime": (theirs, n_calls)}, repeats,
                                   settle=SETTLE)
                rows.append((f"{method} {size} rows", np.dtype(dtype).name, secs))
    return rows


def solver_params(w, solver, max_iter, n_samples):
    """One full-batch solver on the workload's objective, run for max_iter."""
    params = {**w.params, "solver": solver, "max_iter": max_iter, "tol": 0.0,
              "random_state": SEED}
    if solver == "adam":
        params.update(batch_size=n_samples, learning_rate_init=0.01,
                      n_iter_no_change=10**9)
    if solver == "lbfgs":
        params["max_fun"] = 10**6
    return params


def loss_history(w, X, y, solver, budget):
    """The objective after each iteration of one long fit.

    newton: loss_curve_; lbfgs: its verbose lines; adam (full batch):
    loss_curve_[j] is the loss with the weights after j steps, so iteration
    j + 1 is the first that saw it.
    """
    est = fastbp.MLPClassifier(**solver_params(w, solver, budget, X.shape[0]),
                               verbose=solver == "lbfgs")
    out = io.StringIO()
    with redirect_stdout(out):
        est.fit(X, y)
    if solver == "lbfgs":
        return [float(v) for v in re.findall(r"loss = (\S+)", out.getvalue())]
    return list(est.loss_curve_)


def bench_solvers(w, X, y, repeats):
    """Iterations and interleaved median time for each solver to two targets.

    "reached by all": (1 + LOOSE) times the worst of the solvers' best losses
    within their budgets, so every solver gets there; "best": (1 + TIGHT)
    times the lowest loss any solver found. A timed fit stops at the first
    iteration whose loss is at or below the target; None: never reached.
    """
    curves = {s: loss_history(w, X, y, s, b) for s, b in w.solvers.items()}
    targets = {"reached by all": (1 + LOOSE) * max(min(c) for c in curves.values()),
               "best": (1 + TIGHT) * min(min(c) for c in curves.values())}
    iters = {name: {s: next((i + 1 for i, v in enumerate(c) if v <= t), None)
                    for s, c in curves.items()}
             for name, t in targets.items()}
    runs = sorted({(s, k) for by in iters.values() for s, k in by.items() if k})
    secs = {run: [] for run in runs}
    for _ in range(repeats):
        for s, k in runs:
            est = fastbp.MLPClassifier(**solver_params(w, s, k, X.shape[0]))
            secs[s, k].append(timed(est.fit, X, y)[0])
            assert est.n_iter_ == k, (w.name, s, est.n_iter_, k)
    return {"targets": targets, "iterations": iters,
            "time": {name: {s: k and median(secs[s, k]) for s, k in by.items()}
                     for name, by in iters.items()},
            "best": {s: min(c) for s, c in curves.items()},
            "budget": dict(w.solvers)}


def _status_kib(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def reset_peak_rss():
    """Start a new peak-RSS window; return the resident bytes now.

    Linux: writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS.
    Elsewhere the window is the whole process (ru_maxrss).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS:") * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss():
    """Peak resident bytes since reset_peak_rss (VmHWM, else ru_maxrss).

    Not ru_maxrss on Linux: it carries the parent's RSS across fork/exec.
    """
    try:
        return _status_kib("VmHWM:") * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(workload, name, xpath, ypath, threads):
    """In a fresh interpreter: print the RSS growth of one one-epoch fit."""
    w = next(w for w in WORKLOADS if w.name == workload)
    X = sp.load_npz(xpath) if xpath.endswith(".npz") else np.load(xpath)
    y = np.load(ypath)
    est = CONTENDERS[name](w, estimator_params(w, 1))
    gc.collect()
    before = reset_peak_rss()
    with threadpool_limits(int(threads)):
        est.fit(X, y)
    print(peak_rss() - before)


def bench_memory(w, X, y, threads):
    """Peak RSS growth of a fit, per contender, each in a fresh process.

    The child loads X from disk and measures from just before fit, so the
    peak is the fit's own, not the data maker's.
    """
    with tempfile.TemporaryDirectory() as tmp:
        xpath = os.path.join(tmp, "X.npz" if sp.issparse(X) else "X.npy")
        ypath = os.path.join(tmp, "y.npy")
        if sp.issparse(X):
            sp.save_npz(xpath, X)
        else:
            np.save(xpath, X)
        np.save(ypath, y)
        growth = {}
        for name in MEMORY_CONTENDERS:
            cmd = [sys.executable, __file__, "--memory-child", w.name, name, xpath,
                   ypath, str(threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            growth[name] = max(0, int(out.stdout.split()[-1]))
    return growth


def x_bytes(X):
    if sp.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


# A contender's final loss against scikit-learn's after equal work: the run
# fails unless |loss / loss_sklearn - 1| <= LOSS_TOL[name][dtype]. In float64
# fastbp follows scikit-learn's trajectory to rounding, and so does JAX, which
# runs scikit-learn's update formulas (XLA may reassociate sums). PyTorch's
# Adam adds epsilon to sqrt(v / (1 - beta2^t)) rather than to sqrt(v), a
# different step while v is small: its Adam runs drift (2.5e-3 on the full
# wide workload). In float32 every pair of implementations drifts apart as
# rounding differences compound over thousands of steps: fastbp against
# scikit-learn 1.5e-3 after 3 epochs of the full wide workload (loss 0.032).
LOSS_TOL = {
    "fastbp": {"float64": 1e-9, "float32": 1e-2},
    "jax": {"float64": 1e-4, "float32": 1e-2},
    "torch": {"float64": 2e-2, "float32": 2e-2},
    "torch.compile": {"float64": 2e-2, "float32": 2e-2},
}
LOSS_FAILURES = []  # (workload, threads, contender, loss, sklearn's, rel. diff)


def check_losses(w, X, loss, epochs, threads):
    """Check each contender's final loss against scikit-learn's, to LOSS_TOL.

    A miss is recorded, and the run exits with an error once its report is
    written (the other rows' times are not lost)."""
    ref = loss["sklearn"]
    for name, tol in LOSS_TOL.items():
        if name in loss and epochs[name] == epochs["sklearn"]:
            rel = abs(loss[name] / ref - 1)
            print(f"    final loss {name}: {loss[name]:.9g}, sklearn {ref:.9g}, "
                  f"rel. diff {rel:.1e}", flush=True)
            if rel > tol[X.dtype.name]:
                LOSS_FAILURES.append((w.name, threads, name, loss[name], ref, rel))


def run_workload(w, threads, peak, names, repeats, quick, memory):
    """Result rows (dicts) for one workload at the current thread limit."""
    X, y = w.data(w.n[quick])
    units = layer_units(w, X, y)
    base = {"workload": w.name, "threads": threads, "n_samples": X.shape[0],
            "units": units, "dtype": X.dtype.name}
    if w.solvers:
        return [{**base, "kind": "solvers", **bench_solvers(w, X, y, repeats)}]
    if w.sizes:
        rows = [{**base, "kind": "sizes", "workload": call,
                 "time": {k: median(v) for k, v in secs.items()},
                 "ratio": median_ratios(secs), "raw": secs}
                for call, secs in bench_sizes(w, X, y, names, repeats, quick)]
        if load_onnxruntime():
            rows += [{**base, "kind": "onnx", "workload": call, "dtype": dtype,
                      "time": {k: median(v) for k, v in secs.items()},
                      "ratio": median_ratios(secs), "raw": secs}
                     for call, dtype, secs in bench_onnx(w, X, y, threads, repeats,
                                                         quick)]
        return rows
    if w.predict:
        names = [n for n in names if n not in TRAIN_ONLY]
        bulk, single, agree = bench_predict(w, X, y, names, repeats, quick)
        limit = flops(X, units, 2) / peak[X.dtype.name]
        t_bulk = {k: median(v) for k, v in bulk.items()}
        t_one = {k: median(v) for k, v in single.items()}
        return [
            {**base, "kind": "predict", "workload": f"predict {X.shape[0]} rows",
             "time": t_bulk, "limit": limit, "share": limit / t_bulk["fastbp"],
             "ratio": median_ratios(bulk), "agree": agree,
             "raw": bulk},
            {**base, "kind": "predict", "workload": "predict 1 row", "time": t_one,
             "ratio": {k: v / t_one["fastbp"] for k, v in t_one.items()}},
        ]
    if sp.issparse(X):  # JAX and torch.compile: dense only
        names = [n for n in names if n not in TRAIN_ONLY]
    secs, loss, epochs, compile_s, busy = bench_train(w, X, y, names, repeats,
                                                      quick)
    check_losses(w, X, loss, epochs, threads)
    limit = flops(X, units, 6) / peak[X.dtype.name]
    t_med = {k: median(v) for k, v in secs.items()}
    row = {**base, "kind": "train", "epochs": epochs, "time": t_med, "limit": limit,
           "share": limit / t_med["fastbp"], "ratio": median_ratios(secs),
           "loss": loss, "raw": secs, "compile": compile_s, "busy": busy,
           "loss_rel_diff": abs(loss["sklearn"] / loss["fastbp"] - 1)}
    if memory:
        row["memory"] = {"x_bytes": x_bytes(X),
                         "growth": bench_memory(w, X, y, threads)}
    return [row]


THREAD_FITS = 4


def bench_threads(quick, repeats):
    """N independent fits one after another vs N threads at once.

    BLAS is pinned to 1 thread, so any speedup comes from the fits running
    in parallel, which needs the GIL released during training. Returns rows
    with median seconds and the median per-repeat speedup.
    """
    from concurrent.futures import ThreadPoolExecutor

    n, epochs = (8000, 2) if quick else (20000, 5)
    X, y = make_classification(n, 50, n_informative=10, random_state=SEED)
    params = dict(hidden_layer_sizes=(64,), solver="adam", batch_size=32,
                  max_iter=epochs, tol=0, n_iter_no_change=10**9)
    makers = {"fastbp": fastbp.MLPClassifier, "sklearn": sk_nn.MLPClassifier}
    rows = []
    with threadpool_limits(1):
        for name, cls in makers.items():
            def fit(seed, cls=cls):
                return cls(random_state=seed, **params).fit(X, y)

            fit(0)  # warm-up
            seq, par, busy, busy_seq = [], [], [], []
            for _ in range(repeats):
                cpu = time.process_time()
                t, models = timed(lambda: [fit(s) for s in range(THREAD_FITS)])
                busy_seq.append((time.process_time() - cpu) / t)
                seq.append(t)
                with ThreadPoolExecutor(THREAD_FITS) as pool:
                    cpu = time.process_time()
                    t, threaded = timed(
                        lambda: list(pool.map(fit, range(THREAD_FITS))))
                    busy.append((time.process_time() - cpu) / t)
                par.append(t)
                for a, b in zip(models, threaded):
                    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_, b.coefs_))
            rows.append({"contender": name, "fits": THREAD_FITS, "n_samples": n,
                         "epochs": epochs, "sequential": median(seq),
                         "threaded": median(par), "cpus_busy": median(busy),
                         "cpus_busy_sequential": median(busy_seq),
                         "speedup": median(a / b for a, b in zip(seq, par))})
    return rows


def median_ratios(secs):
    """Median over repeats of (contender time / fastbp time) in the same repeat."""
    return {n: median(a / b for a, b in zip(v, secs["fastbp"]))
            for n, v in secs.items()}


# ----------------------------------------------------------------------------
# reporting


def fmt_time(s):
    if s is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt(x, spec=".3g", suffix=""):
    return "—" if x is None else f"{x:{spec}}{suffix}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def markdown(report):
    names = report["contenders"]
    others = names[1:]
    rows = report["rows"]
    train = [r for r in rows if r["kind"] == "train"]
    predict = [r for r in rows if r["kind"] == "predict"]
    peaks = ", ".join(f"{t} thr: {p['float64'] / 1e9:.1f} GFLOP/s f64, "
                      f"{p['float32'] / 1e9:.1f} f32"
                      for t, p in report["peak"].items())
    out = [f"# fastbp benchmark ({'quick' if report['quick'] else 'full'})", "",
           report["machine"], "",
           f"GEMM peak (NumPy matmul {report['gemm_n']}²): {peaks}", ""]

    def speed(r):
        return ([fmt_time(r["time"].get(n)) for n in names]
                + [fmt(r["ratio"].get(n), ".1f", "×") for n in others]
                + [fmt_time(r.get("limit")),
                   fmt(r.get("share") and 100 * r["share"], ".0f", "%")])

    speed_cols = [*names, *(f"{n}/fastbp" for n in others), "FLOP limit",
                  "fastbp at limit"]
    def loss(r, n):
        ep = r["epochs"].get(n)
        short = f" ({ep} ep)" if ep is not None and ep != r["epochs"]["fastbp"] else ""
        return fmt(r["loss"].get(n), ".6g") + short

    if train:
        out += ["## Training: time per epoch (median)", ""]
        out += table(["workload", "thr", "epochs", *speed_cols], [
            [r["workload"], r["threads"], str(r["epochs"]["fastbp"]) + "".join(
                f" ({n} {e})" for n, e in r["epochs"].items()
                if e != r["epochs"]["fastbp"]), *speed(r)] for r in train])
        compiled = sorted({n for r in train for n in r.get("compile", {})},
                          key=names.index)
        if compiled:
            out += ["", "## Compilation (warm-up, not in the times above): "
                    "longest per fit, seconds", ""]
            out += table(["workload", "thr", *compiled], [
                [r["workload"], r["threads"],
                 *(fmt(r["compile"].get(n), ".2f") for n in compiled)]
                for r in train])
        out += ["", "## Training: CPUs busy during fit (process CPU s / wall s, "
                "median)", ""]
        out += table(["workload", "thr", *names], [
            [r["workload"], r["threads"],
             *(fmt(r.get("busy", {}).get(n), ".2f") for n in names)] for r in train])
        out += ["", "## Training: final loss after equal work", ""]
        out += table(["workload", "thr", *names, "sklearn vs fastbp rel. diff"], [
            [r["workload"], r["threads"], *(loss(r, n) for n in names),
             fmt(r["loss_rel_diff"], ".1e")] for r in train])
    if predict:
        out += ["", "## Predict (median)", ""]
        out += table(["call", "thr", *speed_cols],
                     [[r["workload"], r["threads"], *speed(r)] for r in predict])
        agree = ", ".join(f"{n} {100 * a:.2f}%"
                          for n, a in predict[0]["agree"].items() if n != "fastbp")
        out += ["", f"Labels equal to fastbp's on the {predict[0]['n_samples']} "
                f"rows: {agree}."]
    if report.get("thread_rows"):
        first = report["thread_rows"][0]
        out += ["", f"## {first['fits']} fits in threads (BLAS 1 thread each, "
                f"{os.cpu_count()} CPUs)", ""]
        out += table(["contender", "fits", "sequential", "threads", "speedup",
                      "CPUs busy seq / threads"], [
            [r["contender"], f"{r['fits']} × {r['n_samples']} rows × "
             f"{r['epochs']} ep", fmt_time(r["sequential"]),
             fmt_time(r["threaded"]), fmt(r["speedup"], ".2f", "×"),
             f"{r['cpus_busy_sequential']:.2f} / {r['cpus_busy']:.2f}"]
            for r in report["thread_rows"]])
        out += ["", "Threaded models equal the sequential ones bit for bit. CPUs "
                "busy: process CPU seconds per wall second (1.0 = one whole core; "
                "below 1 sequentially means other processes hold the cores). "
                f"Load average now: {os.getloadavg()[0]:.1f}."]
    sizes = [r for r in rows if r["kind"] == "sizes"]
    if sizes:
        out += ["", f"## Calls by size: {sizes[0]['n_samples']}-row digits model "
                "(median per call)", ""]
        out += table(["call", "thr", "fastbp", "sklearn", "sklearn/fastbp"], [
            [r["workload"], r["threads"], fmt_time(r["time"]["fastbp"]),
             fmt_time(r["time"].get("sklearn")), fmt(r["ratio"].get("sklearn"),
                                                    ".2f", "×")]
            for r in sizes])
        out += ["", "scikit-learn's MLP has no transform: its predict_proba stands "
                "in. partial_fit: one call on the next chunk of the data."]
    onnx = [r for r in rows if r["kind"] == "onnx"]
    if onnx:
        out += ["", "## Predict against onnxruntime: the same model, exported with "
                "fastbp.to_onnx (median per call)", ""]
        out += table(["call", "dtype", "thr", "fastbp", "onnxruntime",
                      "onnxruntime/fastbp"], [
            [r["workload"], r["dtype"], r["threads"], fmt_time(r["time"]["fastbp"]),
             fmt_time(r["time"]["onnxruntime"]),
             fmt(r["ratio"]["onnxruntime"], ".2f", "×")] for r in onnx])
        out += ["", "onnxruntime: intra_op_num_threads = thr, one inter-op thread, "
                "inputs already contiguous in the model's dtype; its outputs equal "
                "fastbp's (labels exactly, probabilities to rounding)."]
    solvers = [r for r in rows if r["kind"] == "solvers"]
    if solvers:
        order = list(solvers[0]["best"])
        out += ["", "## Time to a target loss: fastbp's full-batch solvers", ""]
        out += table(
            ["workload", "thr", "target", "loss",
             *(f"{s} {c}" for s in order for c in ("iters", "time"))],
            [[r["workload"], r["threads"], name, fmt(t, ".7g"),
              *(v for s in order for v in (fmt(r["iterations"][name][s], "d"),
                                           fmt_time(r["time"][name][s])))]
             for r in solvers for name, t in r["targets"].items()])
        budget = ", ".join(f"{s} {b}" for s, b in solvers[0]["budget"].items())
        best = "; ".join(f"{r['workload']}: " + ", ".join(
            f"{s} {v:.7g}" for s, v in r["best"].items()) for r in solvers)
        out += ["", f"Budgets (iterations): {budget}; adam runs full-batch epochs "
                f"at learning_rate_init=0.01. Targets: reached by all = (1 + "
                f"{LOOSE:g}) × the worst of the best losses; best = (1 + "
                f"{TIGHT:g}) × the lowest loss found. Best losses: {best}."]
    mem = [r for r in train if "memory" in r]
    if mem:
        out += ["", "## Peak RSS growth during a one-epoch fit (fresh process each)",
                ""]
        out += table(["workload", "X size",
                      *(f"{n} {c}" for n in MEMORY_CONTENDERS for c in ("MB", "/ X"))],
                     [[r["workload"], f"{r['memory']['x_bytes'] / 2**20:.1f} MB",
                       *(f"{g / d:.{p}f}" for g in r["memory"]["growth"].values()
                         for d, p in ((2**20, 1), (r["memory"]["x_bytes"], 2)))]
                      for r in mem])
    return "\n".join(out + ["", *report["notes"]]) + "\n"


def chart(report, path):
    """Each contender's time relative to fastbp, log scale; None or a note."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart (pip install matplotlib)."
    threads = report["threads"]
    others = report["contenders"][1:]
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 6),
                             sharey=True, squeeze=False)
    for ax, t in zip(axes[0], threads):
        rows = [r for r in report["rows"] if r["threads"] == t and "ratio" in r
                and r["kind"] not in ("sizes", "onnx")]  # their own peers
        y = np.arange(len(rows))
        height = 0.8 / len(others)
        for k, name in enumerate(others):
            ax.barh(y + k * height, [r["ratio"].get(name, np.nan) for r in rows], height,
                    label=f"{name} time / fastbp time")
        ax.axvline(1.0, color="k", lw=1)
        ax.set_xscale("log")
        ax.set_yticks(y + 0.4 - height / 2, [r["workload"] for r in rows])
        ax.set_title(f"{t} thread{'s' * (t > 1)}: right of 1 = fastbp faster")
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0][0].invert_yaxis()  # shared: once for all, first workload on top
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------
# driver


def pin_threads(cpus):
    """Every thread of this process onto cpus (Linux; elsewhere nothing).
    A pass at fewer threads than cores runs pinned: XLA runs independent
    ops of its executable concurrently on a pool of its own whatever its
    flags (CPU/wall 1.4-1.85 at "1 thread" before), and this holds every
    contender to the same cores."""
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        return
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer samples, epochs and repeats (under 2 minutes)")
    ap.add_argument("--threads", type=int, nargs="+", default=POWERS_OF_TWO,
                    help="thread counts (default: 1, 2, 4 ... up to the cores)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--repeats", type=int, help="override the repeat count")
    ap.add_argument("--only", nargs="+", help="workloads whose name contains one")
    args = ap.parse_args(argv)
    quick = args.quick
    repeats = args.repeats or REPEATS[quick]
    torch = load_torch()
    # XLA's thread pool is fixed when JAX starts: pinned to the first count.
    jax = load_jax(args.threads[0])
    names = (["fastbp", "numpy", "sklearn"]
             + (["torch", "torch.compile"] if torch else []) + (["jax"] if jax else []))
    notes = [] if torch else ["PyTorch is not installed: no torch columns."]
    if not jax:
        notes.append("JAX is not installed: no jax column.")
    elif len(args.threads) > 1:
        notes.append(f"jax runs at {args.threads[0]} thread(s) only: XLA fixes its "
                     "threads when JAX starts (run --threads N for another count).")
    if jax and args.threads[0] > 1:
        notes.append("jax is not pinned above 1 thread: XLA then uses every core.")
    ort = load_onnxruntime()
    if not ort:
        notes.append("onnxruntime (or onnx) is not installed: no onnxruntime rows.")
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
               f"{platform.python_version()}, NumPy {np.__version__}, scikit-learn "
               f"{sklearn.__version__}, fastbp {fastbp.__version__}"
               + (f", torch {torch.__version__}" if torch else "")
               + (f", jax {jax.__version__}" if jax else "")
               + (f", onnxruntime {ort.__version__}" if ort else "")
               + f"; {repeats} repeats; load average at start "
               + "/".join(f"{x:.1f}" for x in os.getloadavg()))
    report = {"quick": quick, "contenders": names, "machine": machine,
              "threads": args.threads, "gemm_n": GEMM_N[quick], "peak": {},
              "rows": [], "notes": notes}
    start = time.perf_counter()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    for threads in args.threads:
        if torch:
            torch.set_num_threads(threads)
        if threads < len(cpus):
            pin_threads(cpus[:threads])
        with threadpool_limits(threads):
            peak = {np.dtype(d).name: gemm_peak(d, GEMM_N[quick])
                    for d in (np.float64, np.float32)}
            report["peak"][threads] = peak
            for w in WORKLOADS:
                if args.only and not any(s in w.name for s in args.only):
                    continue
                print(f"[{time.perf_counter() - start:5.0f} s] {threads} thread(s): "
                      f"{w.name}", flush=True)
                here = [n for n in names if n != "jax" or threads == args.threads[0]]
                report["rows"] += run_workload(
                    w, threads, peak, here, repeats, quick,
                    memory=not quick and threads == args.threads[0])
        if threads < len(cpus):
            pin_threads(cpus)
    if not args.only or any(s in "threads" for s in args.only):
        print(f"[{time.perf_counter() - start:5.0f} s] {THREAD_FITS} fits in threads",
              flush=True)
        report["thread_rows"] = bench_threads(quick, repeats)
    if any(len(set(r["epochs"].values())) > 1
           for r in report["rows"] if r["kind"] == "train"):
        notes.append("(k ep) / (numpy k): that contender ran k epochs only (the "
                     "NumPy twin is slow at batch size 1); time is per epoch.")
    if quick:
        notes.append("Quick mode: fewer samples, epochs and repeats, a smaller GEMM "
                     "for the peak, no memory measurement.")
    notes.append(f"Total benchmark time: {time.perf_counter() - start:.0f} s.")
    for f in LOSS_FAILURES:
        notes.append("FAILED equal-loss check: {} at {} thread(s), {} loss {:.9g}, "
                     "sklearn {:.9g}, rel. diff {:.1e} (LOSS_TOL)".format(*f))

    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    png_note = chart(report, args.out / "results.png")
    text += f"{png_note}\n" if png_note else ""
    (args.out / "results.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    print(text)
    print(f"wrote results.md, results.json{'' if png_note else ', results.png'} "
          f"in {args.out}")
    if LOSS_FAILURES:
        sys.exit(f"{len(LOSS_FAILURES)} final loss(es) outside LOSS_TOL: see the notes")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(*sys.argv[2:])
    else:
        main()
