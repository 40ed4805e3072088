"""The network's output for X: forward passes in blocks, on the BLAS threads
they profit from. Used by predict, transform and the validation score."""

from contextlib import nullcontext
import numpy as np

from fastbp import _epoch
from fastbp._inputs import as_kernel_input
from fastbp._threads import blas_one_thread, effective_n_threads

# Rows per forward pass at predict time: bounds the workspace, keeps BLAS busy.
PREDICT_ROWS = 1024
# Multiply-adds below which every product of a pass is so small that
# OpenBLAS stays on one thread by itself: no need to hold it there.
_BLAS_TINY = 1 << 16


# units -> (multiply-adds a row, widest layer squared): what the per-call
# rules below read, derived once per network shape rather than per call.
_COSTS = {}


def _costs(units):
    costs = _COSTS.get(units)
    if costs is None:
        if len(_COSTS) > 64:
            _COSTS.clear()
        costs = _COSTS[units] = (sum(a * b for a, b in zip(units[:-1], units[1:])),
                                 max(units) ** 2)
    return costs


def blas_threads(rows, units):
    """BLAS on one thread for a pass of rows-row products: fastbp's own
    threads (n_jobs) split the rows, each calling BLAS single-threaded, so
    the result never depends on BLAS's threading. Tiny passes skip it."""
    if rows * _costs(tuple(units))[1] < _BLAS_TINY:  # bounds every product
        return nullcontext()
    return blas_one_thread()


def forward(X, model, plan_for, backend, n_jobs=None, n_out=None):
    """Output-layer activations of model for validated X, on n_jobs threads.

    plan_for(rows) gives the layout of passes of up to rows rows; a plan of
    the first layers only (n_out wide) gives those layers' activations.
    """
    flat, units, running = model.flat, model.units, model.running
    dtype = flat.dtype
    if type(X) is np.ndarray and X.dtype == dtype and X.flags.c_contiguous:
        X_dense, csr = X, None  # as the engine takes it: no conversion
    else:
        X_dense, csr = as_kernel_input(X, dtype)
    n_samples = X.shape[0]
    rows = max(1, min(n_samples, PREDICT_ROWS))
    plan = plan_for(rows)
    work = np.empty(plan.work_size, dtype=dtype)
    out = np.empty((n_samples, n_out or units[-1]), dtype=dtype)
    work_per_row, widest = _costs(tuple(units))
    # Threads only for passes of more than one tile (tiny passes skip
    # asking the pool what it allows).
    n_threads = (1 if n_samples * work_per_row < 2 * _epoch.PREDICT_TILE_WORK
                 else effective_n_threads(n_jobs))
    if rows * widest < _BLAS_TINY:  # as blas_threads, without a context
        backend.epoch.forward(plan, X_dense, csr, flat, work, out, running,
                              n_threads)
    else:
        with blas_one_thread():
            backend.epoch.forward(plan, X_dense, csr, flat, work, out, running,
                                  n_threads)
    return out
