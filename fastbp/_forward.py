"""The network's output for X: forward passes in blocks, on the BLAS threads
they profit from. Used by predict, transform and the validation score."""

from contextlib import nullcontext
from itertools import pairwise

import numpy as np
from threadpoolctl import threadpool_limits

from fastbp._inputs import as_kernel_input

# Rows per forward pass at predict time: bounds the workspace, keeps BLAS busy.
PREDICT_ROWS = 1024
# Multiply-adds of a pass's largest matrix product between which a second BLAS
# thread costs more (waking it, splitting the work) than it saves: measured
# on 2 cores, digits (200x64x100: 1.3M) and the tanh regression (64x128x64)
# slowed down by a third at 2 threads, while predict's blocks (1024x50x64:
# 3.3M) and the wide network (256x512x256) gain 1.4x. Below the lower bound
# OpenBLAS stays on one thread by itself.
_BLAS_ONE_THREAD = (1 << 16, 1 << 21)


def blas_threads(rows, units):
    """Run a pass of rows-row products on one BLAS thread if they are small."""
    if rows * max(units) ** 2 < _BLAS_ONE_THREAD[0]:  # bounds every product
        return nullcontext()
    largest = rows * max(a * b for a, b in pairwise(units))
    if _BLAS_ONE_THREAD[0] <= largest < _BLAS_ONE_THREAD[1]:
        return threadpool_limits(limits=1, user_api="blas")
    return nullcontext()


def forward(X, model, plan_for, backend):
    """Output-layer activations of model for validated X.

    plan_for(rows) gives the layout of passes of up to rows rows.
    """
    flat, units, running = model.flat, model.units, model.running
    X_dense, csr = as_kernel_input(X, flat.dtype)
    n_samples = X.shape[0]
    rows = max(1, min(n_samples, PREDICT_ROWS))
    plan = plan_for(rows)
    work = np.empty(plan.work_size, dtype=flat.dtype)
    out = np.empty((n_samples, units[-1]), dtype=flat.dtype)
    with blas_threads(rows, units):
        if running is None:  # keywords cost a small predict measurable time
            backend.epoch.forward(plan, X_dense, csr, flat, work, out)
        else:
            backend.epoch.forward(plan, X_dense, csr, flat, work, out,
                                  running=running)
    return out
