"""The network's output for X: forward passes in blocks, on the BLAS threads
they profit from. Used by predict, transform and the validation score."""

from contextlib import nullcontext
import numpy as np

import fastbp._epoch as _epoch
from fastbp._inputs import as_kernel_input
from fastbp._threads import blas_one_thread, effective_n_threads

# Rows per forward pass at predict time: bounds the workspace, keeps BLAS busy.
PREDICT_ROWS = 1024
# Multiply-adds (rows x fan_in x fan_out) below which OpenBLAS runs a gemm
# on one thread by itself (its interface/gemm.c threshold is 2^16 times
# GEMM_MULTITHREAD_THRESHOLD, 4 by default): no need to hold it there.
# gemv threads from far less, so a one-row pass that takes gemv is held.
_BLAS_TINY = 1 << 16
# units -> (multiply-adds a row, largest layer's fan_in x fan_out): what the
# per-call rules below read, derived once per network shape.
_COSTS = {}


def _costs(units):
    costs = _COSTS.get(units)
    if costs is None:
        if len(_COSTS) > 64:
            _COSTS.clear()
        sizes = [a * b for a, b in zip(units[:-1], units[1:])]
        costs = _COSTS[units] = (sum(sizes), max(sizes))
    return costs


def _tiny(rows, largest):
    """No product of a rows-row pass is one OpenBLAS would thread."""
    return rows * largest < _BLAS_TINY and (
        rows > 1 or largest < _epoch.PREDICT_RULE["row_gemv_work"])


def blas_threads(rows, units):
    """BLAS on one thread for a pass of rows-row products: fastbp's own
    threads (n_jobs) split the rows, each calling BLAS single-threaded, so
    the result never depends on BLAS's threading. Tiny passes skip it."""
    if _tiny(rows, _costs(tuple(units))[1]):
        return nullcontext()
    return blas_one_thread()


def forward(X, model, plan_for, backend, n_jobs=None, n_out=None, passes=None):
    """Output-layer activations of model for validated X, on n_jobs threads.

    plan_for(rows) gives the layout of passes of up to rows rows; a plan of
    the first layers only (n_out wide) gives those layers' activations.
    passes, a dict the caller keeps with the fitted state and plan_for (or
    None), holds by row count the one-thread entries (backend.forward_pass)
    bound to model for small dense passes: after the first call of a size,
    the next ones skip the steps below (at one row they cost more than the
    products).
    """
    flat = model.flat
    dtype = flat.dtype
    if type(X) is np.ndarray and X.dtype == dtype and X.flags.c_contiguous:
        if passes is not None:
            bound = passes.get((X.shape[0], backend))
            if bound is not None:
                return _call(bound, X)
        X_dense, csr = X, None  # as the engine takes it: no conversion
    else:
        X_dense, csr = as_kernel_input(X, dtype)
    units, running = model.units, model.running
    n_samples = X.shape[0]
    rows = max(1, min(n_samples, PREDICT_ROWS))
    # A plan for the next power of two of rows: a server's varying batch
    # sizes share a dozen plans (a new one costs ~90 us, 2x a 50-row
    # predict). The passes, and so the output, depend on the rows alone.
    plan = plan_for(min(PREDICT_ROWS, 1 << (rows - 1).bit_length()))
    work_per_row, largest = _costs(tuple(units))
    # Threads only for passes of more than one tile (tiny passes skip
    # asking the pool what it allows).
    one_thread = n_samples * work_per_row < 2 * _epoch.PREDICT_TILE_WORK
    tiny = _tiny(rows, largest)
    if one_thread and csr is None and passes is not None:
        # Every one-thread size fits (a server's batch sizes vary; each
        # entry is a few hundred bytes): 64 thrashed on sizes 1-100 in turn.
        if len(passes) > PREDICT_ROWS:
            passes.clear()
        bound = passes[n_samples, backend] = (
            backend.forward_pass(plan, flat, running), tiny)
        return _call(bound, X_dense)
    work = np.empty(plan.work_size, dtype=dtype)
    out = np.empty((n_samples, n_out or units[-1]), dtype=dtype)
    n_threads = 1 if one_thread else effective_n_threads(n_jobs)
    if tiny:  # as blas_threads, without a context
        backend.forward(plan, X_dense, csr, flat, work, out, running, n_threads)
    else:
        with blas_one_thread():
            backend.forward(plan, X_dense, csr, flat, work, out, running,
                            n_threads)
    return out


def _call(bound, X):
    """A bound pass (the entry, whether its rows are tiny) on X."""
    entry, tiny = bound
    if tiny:
        return entry(X)
    with blas_one_thread():
        return entry(X)
