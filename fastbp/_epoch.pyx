"""The compiled epoch: every minibatch's forward, loss, backward and update.

Python calls ``run_epoch`` once per epoch; the loop over minibatches runs
with the GIL released and allocates nothing. ``loss_grad`` (the full-batch
objective of lbfgs, newton and the second-order tools) and ``forward``
(predict) share the same cores. Every size is checked
in ``_read_plan`` / ``_check_data`` before a pointer is taken.
Twins: ``fastbp._reference.run_epoch``, ``loss_grad``, ``forward``.
"""
import threading

import numpy as np

from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from cpython.pyport cimport PY_SSIZE_T_MAX
from cython cimport floating
from libc.math cimport isfinite
from libc.string cimport memcpy, memset

from fastbp._blas cimport _gemm as gemm, _row_gemv
from fastbp._pool cimport (
    Barrier, Word, barrier_init, barrier_wait, next_item, run, team_rank,
    withdraw_unstarted,
)
from fastbp._kernels cimport (
    SOFTMAX, _act_grad, _bias_act, _bn_backward, _bn_forward, _bias_grad, _csr_forward, _csr_grad,
    _abs_sum, _dropout_backward, _dropout_forward, _gather_rows, _l1_grad,
    _check_loss, _l2_grad, _loss_delta, _needs_preactivation, _sq_norm,
)
from fastbp._optimizers cimport Rule, _clip_gradient, _step, read_rule

cdef extern from *:
    """
    #ifndef FASTBP_DEBUG
    #define FASTBP_DEBUG 0
    #endif
    """
    int FASTBP_DEBUG

# True in the debug build (FASTBP_CYTHON_DEBUG=1): bounds checks are on.
DEBUG_BUILD = bool(FASTBP_DEBUG)

cdef enum:
    # Threads one call may use (fastbp._pool's limit too).
    MAX_THREADS = 64
    # Fewest rows a thread takes of a step.
    MIN_SHARE_ROWS = 16
# A step runs on several threads from this many multiply-adds (rows x
# parameters) on: measured on 2 cores (bench/README.md), sgd batch 32 on
# (64,) (110k) loses on two threads, the tanh regression batch 64 (860k)
# gains.
cdef Py_ssize_t PARALLEL_STEP_WORK = 1 << 18
STEP_RULE = {"max_threads": MAX_THREADS, "min_share_rows": MIN_SHARE_ROWS,
             "parallel_step_work": PARALLEL_STEP_WORK}

# A threaded step on dense input with one row chunk (no batch norm: it is
# on one thread) of a network of TEAM_STEP_PARAMS parameters or more runs as
# a team (_team_step): one workspace, one gradient, each product cut into
# about TRAIN_TILES_PER_THREAD tiles a thread of at least TRAIN_TILE_WORK
# multiply-adds. It saves the private-gradient engine's (_threaded_step)
# zeroing and summing of P values a thread and pays 4 barriers a layer:
# measured on 2 cores (docs/design.md), 1.04-1.31x faster on 784-512-256-10
# and 2000-256-5, even (0.96-1.08x) on 256-512-256-10, within the noise from
# 2^13 to 2^17 parameters (digits, regression, 256-128-10) and 0.77x on a
# probe of 145 parameters and 2048 rows. Two tiles a thread (for balance) cost more
# packing than they gain. Read on every call, so tests and benchmarks can
# change them.
TEAM_STEP_PARAMS = 1 << 15
TRAIN_TILE_WORK = 1 << 16
TRAIN_TILES_PER_THREAD = 1
cdef enum:
    # Narrowest panel of a step's product tiles but the last.
    TRAIN_PANEL_COLS = 32
    # Parameters a range of a team step's update holds (at most MAX_TILES
    # ranges): a few kB, one core's cache lines.
    RANGE_PARAMS = 1024


# A predict of few blocks for its threads (under 2 a thread) computes each
# block's products as tiles (row chunks x column panels) that its T threads
# share (layer by layer; or, where no layer has column panels, each row
# chunk through all the layers: _forward_rows), cut by training's rule
# (_tiles): about T tiles, each worth PREDICT_TILE_WORK multiply-adds or
# more (2^21: a 10-row pass of 2000 -> 256 is 2 panels, which 2 threads
# share; 2^22 left it whole, 1.4x slower there). Every tile packs its part
# of both operands again, so fewer, larger tiles pack less: the earlier
# rule (from the shape alone, 16 tiles of 250 x 128 on 784 -> 512 at 1000
# rows) made 2 threads 1.43x one thread there, these 2 tiles 1.91x (docs/
# design.md). The same T computes the same tiles, hence the same result;
# another T may round differently in the last bit. One thread, or many
# blocks, computes each product whole. Read on every call, so tests and
# benchmarks can change it.
PREDICT_TILE_WORK = 1 << 21
cdef enum:
    MAX_TILES = 4 * MAX_THREADS
    # A one-row product of this many multiply-adds or more goes through
    # gemv, 3-5x faster than gemm there (_blas._row_gemv); the two may round
    # differently, so below it a row predicted alone keeps the bits it has
    # inside a larger block.
    ROW_GEMV_WORK = 1 << 15
    # all_finite's independent sums, and the entries between two looks at
    # them.
    FINITE_LANES = 32
    FINITE_BLOCK = 1024
# Tile work that leaves every product whole.
cdef Py_ssize_t UNTILED = PY_SSIZE_T_MAX
PREDICT_RULE = {"max_tiles": MAX_TILES, "row_gemv_work": ROW_GEMV_WORK}


# Multiply-adds (batch rows x parameters) between two checks for pending
# signals in run_epoch: a few milliseconds of work, so Ctrl-C stops a long
# epoch quickly while the check (taking the GIL) costs nothing measurable.
SIGNAL_CHECK_WORK = 1 << 22
# A step (or full-batch pass) of more rows x parameters than this runs in row
# chunks, with a signal check between them: 2^30 is about 0.1 s on this
# machine (a 60000-row step on (1024, 1024) is 2^36.7, ~9 s in float32), so
# well under a second on one several times slower, while a chunk's one extra
# pass over the P gradient entries stays small beside its 3 x 576
# multiply-adds per parameter (on that network; the step measured no slower).
# Read on every call, so tests can lower it.
STEP_CHUNK_WORK = 1 << 30


# Net, Data and _Arrays' fields are declared in _epoch.pxd.


cdef class _Arrays:
    """Keeps the plan's index arrays alive while a Net points into them."""


cdef _Arrays _plan_arrays(object plan):
    """Views of the plan's arrays and the Net they describe, taken and
    checked once per plan object.

    Plans are frozen with read-only arrays (and cached by make_plan), so the
    views and what was checked through them stay valid. Taking a dozen
    views cost a one-row predict about 2 us; reading the plan's sizes and
    checking every region, another 1 us. A plan that fails a check is not
    kept: it raises again on every call.
    """
    cdef _Arrays a = plan.__dict__.get("_views")
    if a is not None:
        return a
    a = _Arrays()
    a.units = plan.units
    a.coef_off = plan.coef_off
    a.bias_off = plan.bias_off
    a.act_off = plan.act_off
    a.delta_off = plan.delta_off
    a.pre_off = plan.pre_off
    a.acts = plan.acts
    a.drop = plan.drop
    a.mask_off = plan.mask_off
    a.drop_col = plan.drop_col
    if plan.n_running > 0:  # batch norm's offsets only when a layer has it
        a.bn_off = plan.bn_off
        a.zhat_off = plan.zhat_off
        a.bn_stat_off = plan.bn_stat_off
        a.run_off = plan.run_off
    a.n_params, a.work_size, a.n_running = plan.n_params, plan.work_size, plan.n_running
    _check_plan(plan, a, &a.net)
    object.__setattr__(plan, "_views", a)  # frozen dataclass
    return a


cdef void _check_plan(object plan, _Arrays a, Net* net) except *:
    """Check that the plan's regions fit its own parameter and workspace
    sizes (callers' buffers are checked against those), then fill net."""
    cdef Py_ssize_t l, L
    cdef Py_ssize_t n_params = a.n_params, work_size = a.work_size
    cdef bint bn = a.n_running > 0
    L = a.units.shape[0] - 1
    if L < 1:
        raise ValueError("plan needs at least one layer")
    for l in range(L + 1):
        if a.units[l] < 1:
            raise ValueError("plan layer widths must be positive")
    if not (a.coef_off.shape[0] == a.bias_off.shape[0] == a.act_off.shape[0]
            == a.delta_off.shape[0] == a.pre_off.shape[0] == a.acts.shape[0]
            == a.drop.shape[0] == a.mask_off.shape[0] == a.drop_col.shape[0]
            == L) or bn and not (
                a.bn_off.shape[0] == a.zhat_off.shape[0]
                == a.bn_stat_off.shape[0] == a.run_off.shape[0] == L):
        raise ValueError("plan offsets must have one entry per layer")
    if plan.max_rows < 1:
        raise ValueError("plan.max_rows must be positive")
    for l in range(L):
        _check_region(a.coef_off[l], a.units[l] * a.units[l + 1], n_params,
                      "coefficients", "parameter buffer")
        _check_region(a.bias_off[l], a.units[l + 1], n_params, "intercepts",
                      "parameter buffer")
        _check_region(a.act_off[l], a.units[l + 1] * plan.max_rows, work_size,
                      "activations", "workspace")
        _check_region(a.delta_off[l], a.units[l + 1] * plan.max_rows,
                      work_size, "deltas", "workspace")
        if _needs_preactivation(a.acts[l]) or a.pre_off[l] >= 0:
            _check_region(a.pre_off[l], a.units[l + 1] * plan.max_rows,
                          work_size, "pre-activations", "workspace")
    for l in range(L):
        if not 0 <= a.drop[l] < 1 or (l == L - 1 and a.drop[l] != 0):
            raise ValueError("dropout rates must be in [0, 1), 0 for the output")
        if a.drop[l] > 0:
            _check_region(a.mask_off[l], a.units[l + 1] * plan.max_rows,
                          work_size, "dropout masks", "workspace")
            if a.drop_col[l] < 0 or a.drop_col[l] + a.units[l + 1] \
                    > plan.drop_width:
                raise ValueError("dropout columns overrun drop_width")
    for l in range(L if bn else 0):
        if a.bn_off[l] >= 0:
            _check_region(a.bn_off[l], 2 * a.units[l + 1], n_params,
                          "batch norm scale and shift", "parameter buffer")
            _check_region(a.zhat_off[l], a.units[l + 1] * plan.max_rows,
                          work_size, "normalized pre-activations", "workspace")
            _check_region(a.bn_stat_off[l], 3 * a.units[l + 1], work_size,
                          "batch statistics", "workspace")
            _check_region(a.run_off[l], 2 * a.units[l + 1], plan.n_running,
                          "running statistics", "running buffer")
    if a.acts[L - 1] != plan.out_act:
        raise ValueError("plan.acts must end with the output activation")
    if plan.gather_off >= 0:
        _check_region(plan.gather_off, a.units[0] * plan.max_rows, work_size,
                      "gather buffer", "workspace")
    if plan.out_act == SOFTMAX and a.units[L] < 2:
        raise ValueError("softmax output needs at least 2 units")
    _check_loss(plan.loss, plan.loss_param)
    net.n_layers = L
    net.units = &a.units[0]
    net.coef_off = &a.coef_off[0]
    net.bias_off = &a.bias_off[0]
    net.act_off = &a.act_off[0]
    net.delta_off = &a.delta_off[0]
    net.pre_off = &a.pre_off[0]
    net.acts = &a.acts[0]
    net.drop = &a.drop[0]
    net.mask_off = &a.mask_off[0]
    net.drop_col = &a.drop_col[0]
    net.drop_width = plan.drop_width
    net.bn_off = &a.bn_off[0] if bn else NULL
    net.zhat_off = &a.zhat_off[0] if bn else NULL
    net.bn_stat_off = &a.bn_stat_off[0] if bn else NULL
    net.run_off = &a.run_off[0] if bn else NULL
    net.running = NULL
    net.seed = 0
    net.gather_off = plan.gather_off
    net.max_rows = plan.max_rows
    net.out_act = plan.out_act
    net.loss = plan.loss
    net.loss_param = plan.loss_param


cdef _Arrays _read_plan(object plan, Net* net, Py_ssize_t n_params,
                        Py_ssize_t work_size, Py_ssize_t rows_needed):
    """Fill net from plan after checking it fits the buffers it will index."""
    cdef _Arrays a = _plan_arrays(plan)
    if n_params != a.n_params:
        raise ValueError(f"parameter buffer has length {n_params}, the plan "
                         f"{a.n_params}")
    if work_size < a.work_size:
        raise ValueError(f"workspace has length {work_size}, the plan needs "
                         f"{a.work_size}")
    if not 0 < rows_needed <= a.net.max_rows:
        raise ValueError(f"passes of {rows_needed} rows do not fit a plan for "
                         f"{a.net.max_rows}")
    net[0] = a.net
    return a


cdef inline void _check_region(Py_ssize_t off, Py_ssize_t size, Py_ssize_t n,
                               str what, str where) except *:
    if off < 0 or size < 0 or off + size > n:
        raise ValueError(f"{what} [{off}, {off + size}) overrun the {where} "
                         f"of length {n}")


cdef void _check_data(Data* d, Net* net, const floating[:, ::1] X, object csr,
                      const floating[:, ::1] Y, const floating[::1] sw) except *:
    """Check the inputs' shapes against the plan and fill d's sizes."""
    cdef Py_ssize_t L = net.n_layers
    cdef const Py_ssize_t[::1] indices, indptr
    cdef Py_ssize_t i
    d.n_features = net.units[0]
    d.sparse = csr is not None
    if d.sparse:
        data, indices, indptr = csr
        d.n_samples = indptr.shape[0] - 1
        if d.n_samples < 0 or indptr[0] != 0 \
                or indptr[d.n_samples] != data.shape[0] \
                or indices.shape[0] != data.shape[0]:
            raise ValueError("malformed CSR input")
        for i in range(d.n_samples):
            if indptr[i + 1] < indptr[i]:
                raise ValueError("malformed CSR input: indptr decreases")
        for i in range(indices.shape[0]):
            if not 0 <= indices[i] < d.n_features:
                raise ValueError("CSR column index out of range")
    else:
        if X.shape[1] != d.n_features:
            raise ValueError(f"X has {X.shape[1]} features, the network "
                             f"{d.n_features}")
        d.n_samples = X.shape[0]
    if Y is not None and (Y.shape[0] != d.n_samples
                          or Y.shape[1] != net.units[L]):
        raise ValueError(f"Y must have shape ({d.n_samples}, {net.units[L]})")
    if sw is not None and sw.shape[0] != d.n_samples:
        raise ValueError("sample_weight must have one entry per sample")


cdef void _set_data(Data* d, const floating[:, ::1] X, const floating[::1] data,
                    const Py_ssize_t[::1] indices, const Py_ssize_t[::1] indptr,
                    const floating[:, ::1] Y, const floating[::1] sw):
    """Take the data pointers once shapes are checked."""
    d.X = NULL if d.sparse or d.n_samples == 0 else &X[0, 0]
    d.data = &data[0] if d.sparse and data.shape[0] else NULL
    d.indices = &indices[0] if d.sparse and indices.shape[0] else NULL
    d.indptr = &indptr[0] if d.sparse else NULL
    d.Y = &Y[0, 0] if Y is not None and Y.shape[0] else NULL
    d.sw = &sw[0] if sw is not None and sw.shape[0] else NULL


cdef _Arrays _enter(object plan, Net* net, Data* d, Py_ssize_t n_params,
                   Py_ssize_t work_size, Py_ssize_t rows_needed,
                   const floating[:, ::1] X, object csr,
                   const floating[:, ::1] Y, const floating[::1] sw):
    """Every compiled entry's first steps: read and check the plan for
    passes of rows_needed rows, check the data against it, and take the data
    pointers. Returns what keeps net's arrays alive."""
    cdef const floating[::1] data = None
    cdef const Py_ssize_t[::1] indices = None, indptr = None
    arrays = _read_plan(plan, net, n_params, work_size, rows_needed)
    _check_data(d, net, X, csr, Y, sw)
    if csr is not None:
        data, indices, indptr = csr
    _set_data(d, X, data, indices, indptr, Y, sw)
    return arrays


cdef Py_ssize_t _n_rows(object X, object csr):
    """Rows of the (dense or CSR) input, for entries that take all at once."""
    return csr[2].shape[0] - 1 if csr is not None else X.shape[0]


cdef const floating* _forward(Net* net, Data* d, const floating* params,
                              floating* work, const Py_ssize_t* rows,
                              Py_ssize_t row0, Py_ssize_t nb,
                              bint training) noexcept nogil:
    """Forward pass of rows row0 .. row0 + nb (through rows when not NULL).

    In training, hidden layers with a dropout rate are masked (inverted
    dropout, masks from net.seed and the rows' positions row0 + r).
    Batch-normalized layers use the batch's statistics in training (and
    update net.running when set), the running ones otherwise; without
    net.running, always the batch's.

    Activations land in the workspace; returns the dense input rows used
    (NULL for sparse input), which the backward pass needs.
    """
    cdef Py_ssize_t l, fan_in, fan_out
    cdef const floating* A0 = NULL
    cdef const floating* A
    cdef floating* Z
    if not d.sparse:
        if rows != NULL:
            _gather_rows(<const floating*> d.X, d.n_features, rows, row0, nb,
                         work + net.gather_off)
            A0 = work + net.gather_off
        else:
            A0 = <const floating*> d.X + row0 * d.n_features
    A = A0
    for l in range(net.n_layers):
        fan_in = net.units[l]
        fan_out = net.units[l + 1]
        Z = work + net.act_off[l]
        if l == 0 and d.sparse:
            _csr_forward(<const floating*> d.data, d.indices, d.indptr, rows,
                         row0, nb, params + net.coef_off[0], fan_out, Z)
        else:
            gemm(False, False, nb, fan_out, fan_in, 1, A, fan_in,
                 params + net.coef_off[l], fan_out, 0, Z, fan_out)
        _activate(net, params, work, l, 0, nb, training)
        if training and net.drop[l] > 0:
            _dropout_forward(Z, work + net.mask_off[l], nb, fan_out,
                             net.drop[l], net.seed, row0, net.drop_col[l],
                             net.drop_width)
        A = Z
    return A0


cdef inline void _activate(Net* net, const floating* params, floating* work,
                           Py_ssize_t l, Py_ssize_t r0, Py_ssize_t nr,
                           bint training) noexcept nogil:
    """Batch norm (where layer l has it), bias and activation, in place, of
    rows r0 .. r0 + nr of layer l's products."""
    cdef Py_ssize_t m = net.units[l + 1]
    cdef floating* Z = work + net.act_off[l] + r0 * m
    cdef const floating* b
    if net.bn_off != NULL and net.bn_off[l] >= 0:
        # Z = gamma zhat; the shift beta is added as the bias below.
        _bn_forward(Z, params + net.bias_off[l], params + net.bn_off[l],
                    nr, m, work + net.zhat_off[l] + r0 * m,
                    work + net.bn_stat_off[l],
                    <floating*> net.running + net.run_off[l]
                    if net.running != NULL else NULL,
                    training or net.running == NULL)
        b = params + net.bn_off[l] + m
    else:
        b = params + net.bias_off[l]
    _bias_act(Z, b, nr, m, net.acts[l],
              work + net.pre_off[l] + r0 * m if net.pre_off[l] >= 0 else NULL)


cdef double _backward(Net* net, Data* d, const floating* params,
                      floating* grad, floating* work, const floating* A0,
                      const Py_ssize_t* rows, Py_ssize_t row0, Py_ssize_t nb,
                      double alpha, double l1, double* share_sw) noexcept nogil:
    """Loss of the batch just forwarded (L2 and L1 terms included); its gradient.

    Penalties on coefficients only, divided by the batch's sample-weight sum:
    alpha / 2 ||W||^2 + l1 ||W||_1, subgradient l1 sign(W) (0 at W = 0).
    Batch-normalized layers: the gradient of batch statistics (the forward
    pass must have used them); their intercepts, which the normalization
    cancels, get a zero gradient.

    With share_sw (one thread's share of a batch, no batch norm): the plain
    sums instead, without penalties or division, the loss weighted by the
    share's sample-weight sum, which goes to share_sw; _finish_shares
    completes the summed shares.
    """
    cdef Py_ssize_t l, L = net.n_layers, fan_in, fan_out
    cdef double loss, sw_sum = 0, div
    cdef floating* delta
    cdef floating* grad_W
    cdef const floating* W
    loss = _loss_delta(<const floating*> work + net.act_off[L - 1],
                       <const floating*> d.Y, <const floating*> d.sw, rows,
                       row0, nb, net.units[L], net.loss, net.loss_param,
                       work + net.delta_off[L - 1], &sw_sum)
    if share_sw != NULL:
        share_sw[0] = sw_sum
        loss *= sw_sum
        div = 1  # x / 1 is x: the shares' sums divide once, in _finish_shares
    else:
        loss = _add_penalty(net, params, alpha, l1, sw_sum, loss)
        div = sw_sum
    for l in range(L - 1, -1, -1):
        fan_in = net.units[l]
        fan_out = net.units[l + 1]
        delta = work + net.delta_off[l]
        W = params + net.coef_off[l]
        grad_W = grad + net.coef_off[l]
        if net.bn_off != NULL and net.bn_off[l] >= 0:
            _bn_backward(delta, work + net.zhat_off[l],
                         work + net.bn_stat_off[l], params + net.bn_off[l],
                         nb, fan_out, <floating> sw_sum,
                         grad + net.bn_off[l], grad + net.bn_off[l] + fan_out)
        if l == 0 and d.sparse:
            _csr_grad(<const floating*> d.data, d.indices, d.indptr, rows, row0,
                      nb, delta, fan_in, fan_out, grad_W)
        else:
            gemm(True, False, fan_in, fan_out, nb, 1,
                 A0 if l == 0 else work + net.act_off[l - 1], fan_in,
                 delta, fan_out, 0, grad_W, fan_out)
        if share_sw == NULL:
            _penalize(grad_W, W, fan_in * fan_out, alpha, l1, sw_sum)
        if net.bn_off != NULL and net.bn_off[l] >= 0:
            memset(grad + net.bias_off[l], 0, fan_out * sizeof(floating))
        else:
            _bias_grad(delta, nb, fan_out, <floating> div,
                       grad + net.bias_off[l])
        if l > 0:
            # No delta for the input layer: nothing would use it.
            gemm(False, True, nb, fan_in, fan_out, 1, delta, fan_out, W,
                 fan_out, 0, work + net.delta_off[l - 1], fan_in)
            if net.drop[l - 1] > 0:
                # Always after a training forward: its masks are in place.
                _dropout_backward(work + net.act_off[l - 1],
                                  work + net.mask_off[l - 1],
                                  work + net.delta_off[l - 1], nb * fan_in,
                                  net.drop[l - 1])
            _act_grad(work + net.act_off[l - 1],
                      work + net.pre_off[l - 1] if net.pre_off[l - 1] >= 0
                      else NULL,
                      work + net.delta_off[l - 1], nb, fan_in, net.acts[l - 1])
    return loss


cdef double _add_penalty(Net* net, const floating* params, double alpha,
                         double l1, double sw_sum, double loss) noexcept nogil:
    """loss + alpha / 2 ||W||^2 / sw_sum (+ l1 ||W||_1 / sw_sum), all layers."""
    cdef Py_ssize_t l
    cdef double sq = 0, ab = 0
    for l in range(net.n_layers):
        sq += _sq_norm(params + net.coef_off[l], net.units[l] * net.units[l + 1])
    if l1 != 0:
        for l in range(net.n_layers):
            ab += _abs_sum(params + net.coef_off[l],
                           net.units[l] * net.units[l + 1])
    return _penalized(loss, sq, ab, alpha, l1, sw_sum)


cdef inline double _penalized(double loss, double sq, double ab, double alpha,
                              double l1, double sw_sum) noexcept nogil:
    """loss + alpha / 2 sq / sw_sum (+ l1 ab / sw_sum): the batch loss from
    the weights' squared and absolute sums, one or many threads."""
    loss += 0.5 * alpha * sq / sw_sum
    if l1 != 0:
        loss += l1 * ab / sw_sum
    return loss


cdef inline void _penalize(floating* grad_W, const floating* W, Py_ssize_t n,
                           double alpha, double l1,
                           double sw_sum) noexcept nogil:
    """A layer's coefficient gradient sum to (sum + alpha W) / sw_sum (+ L1)."""
    _l2_grad(grad_W, W, n, <floating> alpha, <floating> sw_sum)
    if l1 != 0:
        _l1_grad(grad_W, W, n, <floating> l1, <floating> sw_sum)


cdef void _finish_range(Net* net, const floating* params, floating* grad,
                        Py_ssize_t lo, Py_ssize_t hi, double alpha, double l1,
                        double sw_sum, double* sq, double* ab) noexcept nogil:
    """Parameters lo .. hi of the summed shares' gradient sums to the batch's
    gradient (as _backward divides and penalizes a whole batch's); the
    squared and absolute sums of their coefficients to sq and ab."""
    cdef Py_ssize_t l, a, b, j
    for l in range(net.n_layers):
        a = max(lo, net.coef_off[l])
        b = min(hi, net.coef_off[l] + net.units[l] * net.units[l + 1])
        if a < b:
            _penalize(grad + a, params + a, b - a, alpha, l1, sw_sum)
            sq[0] += _sq_norm(params + a, b - a)
            if l1 != 0:
                ab[0] += _abs_sum(params + a, b - a)
        a = max(lo, net.bias_off[l])
        b = min(hi, net.bias_off[l] + net.units[l + 1])
        for j in range(a, b):
            grad[j] = grad[j] / <floating> sw_sum


cdef Py_ssize_t _step_chunks(Py_ssize_t nb, Py_ssize_t P, int T,
                             const Net* net,
                             Py_ssize_t chunk_work) noexcept nogil:
    """Row chunks of a step of nb rows on T threads: one (the step as it
    always was) up to chunk_work rows x parameters or with batch norm (its
    statistics are the whole batch's); else enough that each holds about
    chunk_work, and at least T MIN_SHARE_ROWS rows. Depends on its arguments
    only, so a trajectory never depends on timing."""
    cdef Py_ssize_t c
    if net.bn_off != NULL or chunk_work < 1 or nb * P <= chunk_work:
        return 1
    c = (nb * P + chunk_work - 1) // chunk_work
    return max(1, min(c, nb // (<Py_ssize_t> T * MIN_SHARE_ROWS)))


cdef int _check_signals() except -1 nogil:
    """PyErr_CheckSignals with the GIL taken: a handler's exception (Ctrl-C's
    KeyboardInterrupt) propagates from here. Main thread only."""
    with gil:
        PyErr_CheckSignals()
    return 0


cdef inline int _step_threads(int n_threads, Py_ssize_t nb, Py_ssize_t P,
                              const Net* net) noexcept nogil:
    """Threads for a step of nb rows: one when the step is too small to gain
    (waking threads and moving the parameters between caches cost more than
    they save) or the network has batch norm (its statistics are the whole
    batch's)."""
    if n_threads < 2 or net.bn_off != NULL or nb * P < PARALLEL_STEP_WORK:
        return 1
    return <int> min(<Py_ssize_t> n_threads, nb // MIN_SHARE_ROWS)


cdef struct Hyper:
    # A Settings record (fastbp._settings), read once by _read_settings.
    Rule rule              # the optimizer's part (_optimizers.read_rule)
    double alpha, l1, clip_norm, clip_value
    Py_ssize_t n_threads


cdef Hyper _read_settings(object s) except *:
    """The settings record's fields, after checking them."""
    cdef Hyper h
    h.rule = read_rule(s)
    h.alpha = s.alpha
    h.l1 = s.l1
    h.clip_norm = s.clip_norm
    h.clip_value = s.clip_value
    h.n_threads = s.n_threads
    for value in (h.rule.lr, h.rule.momentum, h.rule.beta_1, h.rule.beta_2,
                  h.rule.epsilon, h.rule.rho, h.rule.weight_decay, h.alpha, h.l1, h.clip_norm, h.clip_value):
        if not isfinite(value):
            raise ValueError(f"settings must be finite, got {s}")
    if h.clip_norm < 0 or h.clip_value < 0:
        raise ValueError("clip_norm and clip_value must be >= 0 (0: off)")
    if h.n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {h.n_threads}")
    return h


cdef inline void _add_shares(floating* grad, const floating* scratch,
                             const floating* grad0, Py_ssize_t W, Py_ssize_t P,
                             Py_ssize_t lo, Py_ssize_t hi, int first,
                             int T) noexcept nogil:
    """grad[lo:hi] += the other shares' gradients there, in thread order:
    thread 0's own (grad0) unless first, then thread u > 0's (the u-th
    (W + P) slice of scratch, after its workspace)."""
    cdef Py_ssize_t i
    cdef int u
    cdef const floating* other
    for u in range(first, T):
        other = grad0 if u == 0 else scratch + (u - 1) * (W + P) + W
        for i in range(lo, hi):
            grad[i] = grad[i] + other[i]


cdef struct Team:
    # The threads that share each block: the barrier between a layer's
    # products and its activations, and who takes which tile (dynamically,
    # so a thread the OS holds back takes fewer): a counter for this layer
    # and one for the next, reset in turn.
    Barrier done
    Word taken[2]
    int n
    bint elastic  # one block: workers not started by its first barrier are withdrawn


cdef struct StepJob:
    # One row chunk of a threaded step (_threaded_step), shared by its threads.
    Net* net
    Data* d
    void* params
    void* grad
    void* work
    void* scratch
    void* grad0
    void* state
    const Hyper* h
    const Py_ssize_t* rows
    Py_ssize_t W, P, c0, cn, step
    double alpha, l1
    double sw_before       # sample weights of the earlier chunks
    int T
    bint first, last, dbl
    double part_loss[MAX_THREADS]
    double part_sw[MAX_THREADS]
    double part_sq[MAX_THREADS]
    double part_ab[MAX_THREADS]
    Barrier rows_done


cdef void _step_task(void* ctx, int t) noexcept nogil:
    cdef StepJob* j = <StepJob*> ctx
    if j.dbl:
        _step_part(j, t, <double*> j.params)
    else:
        _step_part(j, t, <float*> j.params)


cdef void _step_part(StepJob* j, int t, floating* params) noexcept nogil:
    """Thread t's part of a chunk: its share of the rows into its own
    workspace and gradient; once all shares are in, the sum of the shares
    over its range of parameters (in thread order), and after the last
    chunk their division, penalty and (with h) update there."""
    cdef Py_ssize_t lo, n, W = j.W, P = j.P
    cdef int u, T = j.T
    cdef floating* scratch = <floating*> j.scratch
    cdef floating* grad = <floating*> j.grad
    cdef floating* grad0 = <floating*> j.grad0
    cdef floating* wk = <floating*> j.work if t == 0 else scratch + (t - 1) * (W + P)
    cdef floating* g
    cdef const floating* A0
    cdef double sw
    if t == 0:
        g = grad if j.first else grad0
    else:
        g = scratch + (t - 1) * (W + P) + W
    lo = j.c0 + _part(j.cn, T, t, &n)
    A0 = _forward(j.net, j.d, params, wk, j.rows, lo, n, True)
    j.part_loss[t] = _backward(j.net, j.d, params, g, wk, A0, j.rows, lo, n,
                               j.alpha, j.l1, &j.part_sw[t])
    barrier_wait(&j.rows_done)
    lo = _part(P, T, t, &n)
    _add_shares(grad, scratch, grad0, W, P, lo, lo + n, j.first, T)
    if not j.last:
        return
    sw = j.sw_before
    for u in range(T):
        sw += j.part_sw[u]
    j.part_sq[t] = 0
    j.part_ab[t] = 0
    _finish_range(j.net, params, grad, lo, lo + n, j.alpha, j.l1, sw,
                  &j.part_sq[t], &j.part_ab[t])
    if j.h != NULL:
        _step(&j.h.rule, params + lo, grad + lo, <floating*> j.state + lo, P,
              n, j.step)


cdef double _threaded_step(Net* net, Data* d, floating* params,
                           floating* grad, floating* work, floating* scratch,
                           Py_ssize_t W, Py_ssize_t P, const Py_ssize_t* rows,
                           Py_ssize_t row0, Py_ssize_t nb, int T, Py_ssize_t C,
                           double alpha, double l1, const Hyper* h,
                           floating* state, Py_ssize_t step,
                           bint check) except? -1 nogil:
    """_forward and _backward of a batch in C row chunks on T threads, then
    (with h) the optimizer's step t. Chunk c is rows [nb c / C, nb (c + 1) /
    C); thread t takes its share [n t / T, n (t + 1) / T) of a chunk's n rows
    into its own workspace and gradient (thread 0 work and grad, in later
    chunks the P after the other threads' slices; thread t > 0 the t-th
    (W + P) slice of scratch, which then holds (T - 1) (W + P) + P with
    C > 1). Each chunk's shares are summed into grad in thread order; after
    the last, parameters [P t / T, P (t + 1) / T) are divided, penalized and
    updated. Each chunk is one job of the pool (_step_part). The result
    depends on T and C only, never on timing: every parameter pass is
    elementwise, the penalty's sums are added in thread order. With check,
    pending signals are checked between chunks: a handler's exception
    abandons the step before the update (params and state untouched; grad
    and work hold partial sums).
    Returns the batch loss (at the parameters before the update)."""
    cdef StepJob j
    cdef double loss = 0, sw_sum = 0, sq = 0, ab = 0
    cdef Py_ssize_t c
    cdef int t
    j.net, j.d, j.rows, j.h = net, d, rows, h
    j.params, j.grad, j.work, j.scratch, j.state = params, grad, work, scratch, state
    j.grad0 = scratch + (T - 1) * (W + P)  # thread 0's, c > 0
    j.W, j.P, j.step, j.T = W, P, step, T
    j.alpha, j.l1 = alpha, l1
    j.dbl = floating is double
    for c in range(C):
        j.c0 = row0 + _part(nb, C, c, &j.cn)
        # The first chunk's thread 0 share goes to grad directly.
        j.first = c == 0
        j.last = c == C - 1
        j.sw_before = sw_sum
        barrier_init(&j.rows_done, T)
        if run(_step_task, &j, T) != 0:
            _no_threads(T)
        for t in range(T):
            loss += j.part_loss[t]
            sw_sum += j.part_sw[t]
        if check and not j.last:
            _check_signals()
    for t in range(T):
        sq += j.part_sq[t]
        ab += j.part_ab[t]
    return _penalized(loss / sw_sum, sq, ab, alpha, l1, sw_sum)


cdef void _tiles(Py_ssize_t n, Py_ssize_t k, Py_ssize_t m, bint dense,
                 Py_ssize_t want, Py_ssize_t tile_work, Py_ssize_t* chunk,
                 Py_ssize_t* panel) noexcept nogil:
    """Rows a chunk and columns a panel of the tiles of an (n, k) @ (k, m)
    product that T threads share, training's and predict's: as many as can
    be up to want (about T; fewer when a tile would hold under tile_work
    multiply-adds, a chunk under MIN_SHARE_ROWS rows or a panel under
    TRAIN_PANEL_COLS columns; a sparse product is split by rows only).
    Each tile packs its rows of the left operand and its columns of the
    right one again (OpenBLAS), chunks x m + panels x n values: of the
    splits into the most tiles, the one that packs least, and of those the
    one with the most row chunks (predict's rows go through every layer
    when no layer has panels: _row_chunk)."""
    cdef Py_ssize_t c, p, best_c = 1, best_p = 1
    want = min(want, <Py_ssize_t> MAX_TILES, max(1, n * k * m // tile_work))
    for c in range(1, min(want, max(1, n // MIN_SHARE_ROWS)) + 1):
        p = max(1, min(want // c, m // TRAIN_PANEL_COLS)) if dense else 1
        if c * p > best_c * best_p or (c * p == best_c * best_p
                                       and c * m + p * n <= best_c * m + best_p * n):
            best_c, best_p = c, p
    chunk[0] = (n + best_c - 1) // best_c
    # Whole SIMD lanes per panel: widths a multiple of 8 but the last.
    panel[0] = min(m, ((m + best_p - 1) // best_p + 7) // 8 * 8)


def train_tiles(Py_ssize_t rows, Py_ssize_t fan_in, Py_ssize_t fan_out,
                int n_threads, tile_work=None):
    """(rows a chunk, columns a panel) of a team step's (rows, fan_in) @
    (fan_in, fan_out) product on n_threads: the size rule, for tests and
    docs."""
    cdef Py_ssize_t chunk, panel
    _tiles(rows, fan_in, fan_out, True, n_threads * TRAIN_TILES_PER_THREAD,
           max(1, TRAIN_TILE_WORK if tile_work is None else tile_work),
           &chunk, &panel)
    return chunk, panel


cdef inline Py_ssize_t _part(Py_ssize_t n, Py_ssize_t parts, Py_ssize_t i,
                             Py_ssize_t* size) noexcept nogil:
    """Start of part i of n items cut into parts as even as can be
    (n i / parts ..), its size in size: how rows, chunks and parameter
    ranges are shared."""
    cdef Py_ssize_t lo = n * i // parts
    size[0] = n * (i + 1) // parts - lo
    return lo


cdef inline Py_ssize_t _n_tiles(Py_ssize_t n, Py_ssize_t m, Py_ssize_t chunk,
                                Py_ssize_t panel) noexcept nogil:
    return ((n + chunk - 1) // chunk) * ((m + panel - 1) // panel)


cdef struct TeamJob:
    # One step on T threads sharing one workspace and one gradient
    # (_team_step): the products as tiles (from the shape and T), the rest
    # by row chunks and by parameter ranges (from the shape alone).
    Net* net
    Data* d
    void* params
    void* grad
    void* work
    void* state
    const Hyper* h
    const Py_ssize_t* rows
    Py_ssize_t row0, nb, P, step, tile_work
    Py_ssize_t want        # tiles a product is cut into, at most
    Py_ssize_t chunks      # row chunks of the elementwise passes
    Py_ssize_t ranges      # parameter ranges of the update
    double alpha, l1
    bint dbl
    Team team              # taken[0]: each product phase's tiles
    double chunk_loss[MAX_TILES]   # loss x sample-weight sum of each chunk
    double chunk_sw[MAX_TILES]
    double range_sq[MAX_TILES]     # the penalty's sums of each range
    double range_ab[MAX_TILES]


cdef void _team_task(void* ctx, int t) noexcept nogil:
    cdef TeamJob* j = <TeamJob*> ctx
    if j.dbl:
        _team_part(j, t, <double*> j.params)
    else:
        _team_part(j, t, <float*> j.params)


cdef inline void _meet(TeamJob* j, int t, bint reset) noexcept nogil:
    """The team's barrier; with reset, thread 0 then zeroes the tile counter
    for the next product phase (every thread left the last one before the
    barrier, and a barrier comes before the next)."""
    barrier_wait(&j.team.done)
    if reset and t == 0:
        j.team.taken[0].v = 0


cdef void _team_forward(TeamJob* j, int t, floating* params, floating* work,
                        const floating* A, Py_ssize_t l) noexcept nogil:
    """Layer l's product (A @ W) as tiles taken by whoever comes first, then
    bias, activation, dropout (and after the output layer the loss delta) by
    row chunks, chunk c on thread c mod T."""
    cdef Net* net = j.net
    cdef Py_ssize_t k = net.units[l], m = net.units[l + 1], nb = j.nb
    cdef Py_ssize_t chunk, panel, n, i, r0, nr, C = j.chunks
    cdef floating* Z = work + net.act_off[l]
    cdef double sw, loss
    cdef int T = j.team.n
    _tiles(nb, k, m, True, j.want, j.tile_work, &chunk, &panel)
    n = _n_tiles(nb, m, chunk, panel)
    i = next_item(&j.team.taken[0])
    while i < n:
        _gemm_tile(False, False, nb, m, k, A, k, params + net.coef_off[l], m,
                   Z, m, chunk, panel, i)
        i = next_item(&j.team.taken[0])
    _meet(j, t, True)
    i = t
    while i < C:  # chunk i on thread i mod T
        r0 = _part(nb, C, i, &nr)
        _activate(net, params, work, l, r0, nr, True)
        if net.drop[l] > 0:
            _dropout_forward(Z + r0 * m, work + net.mask_off[l] + r0 * m, nr,
                             m, net.drop[l], net.seed, j.row0 + r0,
                             net.drop_col[l], net.drop_width)
        if l == net.n_layers - 1:
            sw = 0
            loss = _loss_delta(
                <const floating*> Z + r0 * m, <const floating*> j.d.Y,
                <const floating*> j.d.sw, j.rows, j.row0 + r0, nr, m,
                net.loss, net.loss_param, work + net.delta_off[l] + r0 * m,
                &sw)
            j.chunk_loss[i] = loss * sw  # the chunk's sum, as a share's
            j.chunk_sw[i] = sw
        i += T
    _meet(j, t, False)


cdef void _team_backward(TeamJob* j, int t, floating* params, floating* grad,
                         floating* work, const floating* A,
                         Py_ssize_t l) noexcept nogil:
    """Layer l's gradient sums over all the batch's rows, no thread holding
    more than its tiles: grad_W = A^T delta as (fan_in rows x fan_out
    columns) tiles, the bias sums as one item, and (l > 0) the next delta =
    delta W^T as (row chunk x fan_in columns) tiles, all from one counter;
    then dropout and the activation derivative on that delta by row chunks."""
    cdef Net* net = j.net
    cdef Py_ssize_t k = net.units[l], m = net.units[l + 1], nb = j.nb
    cdef Py_ssize_t gc, gp, dc, dp, n_grad, n, i, r0, nr, C = j.chunks
    cdef const floating* delta = work + net.delta_off[l]
    cdef floating* prev
    cdef int T = j.team.n
    _tiles(k, nb, m, True, j.want, j.tile_work, &gc, &gp)
    n_grad = _n_tiles(k, m, gc, gp)
    n = n_grad + 1
    if l > 0:
        _tiles(nb, m, k, True, j.want, j.tile_work, &dc, &dp)
        n += _n_tiles(nb, k, dc, dp)
    i = next_item(&j.team.taken[0])
    while i < n:
        if i < n_grad:
            _gemm_tile(True, False, k, m, nb, A, k, delta, m,
                       grad + net.coef_off[l], m, gc, gp, i)
        elif i == n_grad:
            _bias_grad(delta, nb, m, 1, grad + net.bias_off[l])
        else:
            _gemm_tile(False, True, nb, k, m, delta, m,
                       params + net.coef_off[l], m, work + net.delta_off[l - 1],
                       k, dc, dp, i - n_grad - 1)
        i = next_item(&j.team.taken[0])
    _meet(j, t, True)
    if l == 0:
        return
    prev = work + net.delta_off[l - 1]
    i = t
    while i < C:  # chunk i on thread i mod T
        r0 = _part(nb, C, i, &nr)
        if net.drop[l - 1] > 0:
            # After the products: they read the activations this rescales.
            _dropout_backward(work + net.act_off[l - 1] + r0 * k,
                              work + net.mask_off[l - 1] + r0 * k,
                              prev + r0 * k, nr * k, net.drop[l - 1])
        _act_grad(work + net.act_off[l - 1] + r0 * k,
                  work + net.pre_off[l - 1] + r0 * k
                  if net.pre_off[l - 1] >= 0 else NULL,
                  prev + r0 * k, nr, k, net.acts[l - 1])
        i += T
    _meet(j, t, False)


cdef void _team_part(TeamJob* j, int t, floating* params) noexcept nogil:
    """Thread t's part of a team step: gather, forward, loss and backward
    phase by phase, then its parameter ranges [R t / T, R (t + 1) / T) of
    the gradient divided and penalized (_finish_range) and (with h)
    updated."""
    cdef Net* net = j.net
    cdef Data* d = j.d
    cdef floating* work = <floating*> j.work
    cdef floating* grad = <floating*> j.grad
    cdef const floating* A0
    cdef Py_ssize_t l, i, r0, nr, n, lo, hi, C = j.chunks, R = j.ranges
    cdef Py_ssize_t nf = d.n_features
    cdef double sw = 0
    cdef int T = j.team.n
    if j.rows != NULL:
        i = t
        while i < C:  # chunk i on thread i mod T
            r0 = _part(j.nb, C, i, &nr)
            _gather_rows(<const floating*> d.X, nf, j.rows, j.row0 + r0, nr,
                         work + net.gather_off + r0 * nf)
            i += T
        _meet(j, t, False)
        A0 = work + net.gather_off
    else:
        A0 = <const floating*> d.X + j.row0 * nf
    for l in range(net.n_layers):
        _team_forward(j, t, params, work,
                      A0 if l == 0 else work + net.act_off[l - 1], l)
    for l in range(net.n_layers - 1, -1, -1):
        _team_backward(j, t, params, grad, work,
                       A0 if l == 0 else work + net.act_off[l - 1], l)
    for i in range(C):
        sw += j.chunk_sw[i]
    r0 = _part(R, T, t, &nr)  # thread t's ranges
    for i in range(r0, r0 + nr):
        lo = _part(j.P, R, i, &n)
        hi = lo + n
        j.range_sq[i] = 0
        j.range_ab[i] = 0
        _finish_range(net, params, grad, lo, hi, j.alpha, j.l1, sw,
                      &j.range_sq[i], &j.range_ab[i])
        if j.h != NULL:
            _step(&j.h.rule, params + lo, grad + lo,
                  <floating*> j.state + lo, j.P, hi - lo, j.step)


cdef double _team_step(Net* net, Data* d, floating* params, floating* grad,
                       floating* work, Py_ssize_t P, const Py_ssize_t* rows,
                       Py_ssize_t row0, Py_ssize_t nb, int T, double alpha,
                       double l1, const Hyper* h, floating* state,
                       Py_ssize_t step, Py_ssize_t tile_work,
                       Py_ssize_t per_thread) except? -1 nogil:
    """_forward and _backward of a dense batch without batch norm on T
    threads that share one workspace and one gradient, then (with h) the
    optimizer's step. One pool job (_team_part): products as tiles
    (_tiles: from the shape and T), elementwise passes by row chunks
    and the update by parameter ranges (from the shape alone), with barriers
    between the phases. Every tile is one gemm over all its rows, the loss
    and the penalty's sums are added in chunk and range order, so the result
    depends on T only, never on timing or on which thread took a tile.
    Returns the batch loss (at the parameters before the update)."""
    cdef TeamJob j
    cdef double loss = 0, sw_sum = 0, sq = 0, ab = 0
    cdef Py_ssize_t i
    j.net, j.d, j.rows, j.h = net, d, rows, h
    j.params, j.grad, j.work, j.state = params, grad, work, state
    j.row0, j.nb, j.P, j.step = row0, nb, P, step
    j.tile_work = max(1, tile_work)
    j.want = max(1, per_thread) * T
    j.chunks = min(<Py_ssize_t> MAX_TILES, max(1, nb // MIN_SHARE_ROWS))
    j.ranges = min(<Py_ssize_t> MAX_TILES,
                   max(1, P // <Py_ssize_t> RANGE_PARAMS))
    j.alpha, j.l1 = alpha, l1
    j.dbl = floating is double
    j.team.n = T
    j.team.elastic = False
    j.team.taken[0].v = 0
    barrier_init(&j.team.done, T)
    if run(_team_task, &j, T) != 0:
        _no_threads(T)
    for i in range(j.chunks):
        loss += j.chunk_loss[i]
        sw_sum += j.chunk_sw[i]
    for i in range(j.ranges):
        sq += j.range_sq[i]
        ab += j.range_ab[i]
    return _penalized(loss / sw_sum, sq, ab, alpha, l1, sw_sum)


cdef int _no_threads(int T) except -1 nogil:
    """A job found fewer threads than reserved (the system refused them)."""
    with gil:
        raise RuntimeError(f"fastbp could not start the {T} threads this pass "
                           "needs; set n_jobs lower")


cdef floating[::1] _scratch(const floating* like, Py_ssize_t n):
    """Buffer of n (at least 1) of like's type: the other threads' workspaces."""
    return np.empty(max(n, 1), np.float64 if floating is double else np.float32)


cdef inline void _check_flat(Py_ssize_t n, Py_ssize_t expected,
                             str what) except *:
    if n != expected:
        raise ValueError(f"{what} has length {n}, expected {expected}")


def run_epoch(plan, settings, const floating[:, ::1] X, csr,
              const floating[:, ::1] Y, const floating[::1] sample_weight,
              const Py_ssize_t[::1] order, Py_ssize_t batch_size,
              floating[::1] params, floating[::1] grad, floating[::1] work,
              floating[::1] state, Py_ssize_t step,
              unsigned long long seed=0, floating[::1] running=None):
    """One epoch of minibatch training, in place on params and state.

    Parameters
    ----------
    plan : Plan
        Layout from ``fastbp._network.make_plan``.
    settings : Settings
        Optimizer and training settings (``fastbp._settings.Settings``).
    X : ndarray of shape (n_samples, n_features); (0, n_features) with csr
    csr : (data, indices, indptr) of CSR input with intp indices, or None
    Y : ndarray of shape (n_samples, n_outputs)
    sample_weight : ndarray of shape (n_samples,) or None
    order : ndarray of shape (n_samples,), intp, or None
        Sample order of the epoch (None: 0 .. n_samples - 1, no gather).
    batch_size : int
    params, grad : ndarray of shape (n_params,)
    work : ndarray of shape (plan.work_size,)
    state : ndarray of shape (k n_params,)
        The solver's k = ``STATE_ARRAYS[name]`` flat state arrays one after
        the other, in its rule's order (``fastbp._families.SOLVERS``).
    step : int
        Steps taken so far (counted by the solvers whose row counts steps).
    seed : int in [0, 2**64)
        Dropout seed of the epoch (unused without dropout in the plan).
    running : ndarray of shape (plan.n_running,) or None
        Running batch-norm statistics, updated after every minibatch's
        forward pass; required when the plan has batch norm.

    Returns
    -------
    loss_sum : float
        Sum over batches of batch loss times batch size.
    step : int
        Steps taken after this epoch.

    Raises
    ------
    KeyboardInterrupt (or whatever a signal handler raises)
        In the main thread, pending signals are checked between minibatches
        every SIGNAL_CHECK_WORK multiply-adds, and inside a step of more than
        STEP_CHUNK_WORK (rows x parameters; not with batch norm), which runs
        in row chunks, between chunks. The exception leaves params and state
        those of the last whole optimizer step (an interrupted step is
        abandoned before its update; grad and work are scratch) and carries
        the optimizer steps taken as its ``step`` attribute.
    ValueError
        When a minibatch's sample weights sum to zero (its weighted mean loss
        and gradient are undefined; scikit-learn's np.average raises
        ZeroDivisionError there): the epoch stops before that step, params
        and state those of the last whole step.
    """
    cdef Net net
    cdef Hyper h = _read_settings(settings)
    cdef Data d
    cdef Py_ssize_t n, start, nb, i, P = params.shape[0], chunks, taken
    cdef Py_ssize_t since_check = 0, check_work = SIGNAL_CHECK_WORK
    cdef Py_ssize_t chunk_work = STEP_CHUNK_WORK
    cdef Py_ssize_t team_params = TEAM_STEP_PARAMS, tile_work = TRAIN_TILE_WORK
    cdef Py_ssize_t per_thread = TRAIN_TILES_PER_THREAD
    cdef bint check_signals = threading.current_thread() is threading.main_thread()
    cdef bint weightless = False, weighted = sample_weight is not None
    cdef double batch_weight
    cdef double loss_sum = 0
    cdef const floating* A0
    cdef const Py_ssize_t* rows = NULL
    cdef Py_ssize_t W = plan.work_size
    cdef int T, t
    cdef bint clip = h.clip_norm > 0 or h.clip_value > 0
    arrays = _enter(plan, &net, &d, P, work.shape[0],
                    min(batch_size, <Py_ssize_t> plan.max_rows), X, csr, Y,
                    sample_weight)
    n = d.n_samples
    if batch_size < 1 or batch_size > net.max_rows:
        raise ValueError(f"batch_size {batch_size} does not fit the plan")
    if Y is None or n == 0:
        raise ValueError("training needs targets and at least one sample")
    if order is not None:
        _check_flat(order.shape[0], n, "order")
        for i in range(n):
            if not 0 <= order[i] < n:
                raise ValueError("order holds an index out of range")
        rows = &order[0]
    if not d.sparse and order is not None and net.gather_off < 0:
        raise ValueError("shuffled dense input needs a gather buffer")
    _check_flat(grad.shape[0], P, "grad")
    _check_flat(state.shape[0], P * h.rule.state_arrays, "state")
    _set_running(&net, plan, running)
    net.seed = seed
    T = min(h.n_threads, MAX_THREADS,
            _step_threads(h.n_threads, min(batch_size, n), P, &net))
    # Chunked steps need thread 0's share gradient beside the others' slices.
    cdef floating[::1] scratch = _scratch(
        &params[0], (T - 1) * (W + P)
        + (P if _step_chunks(min(batch_size, n), P, 1, &net, chunk_work) > 1
           else 0))
    try:
        with nogil:
            start = 0
            while start < n:
                nb = min(batch_size, n - start)
                if weighted:
                    batch_weight = 0
                    for i in range(start, start + nb):
                        batch_weight += sample_weight[rows[i] if rows != NULL
                                                      else i]
                    if batch_weight == 0:  # weights are >= 0: all of them 0
                        weightless = True
                        break
                t = _step_threads(T, nb, P, &net)
                chunks = _step_chunks(nb, P, t, &net, chunk_work)
                # step stays the steps taken until this one is whole.
                taken = step + 1 if h.rule.counts_steps else step
                if t > 1 and chunks == 1 and not d.sparse \
                        and P >= team_params:
                    loss_sum += nb * _team_step(
                        &net, &d, &params[0], &grad[0], &work[0], P, rows,
                        start, nb, t, h.alpha, h.l1, NULL if clip else &h,
                        &state[0], taken, tile_work, per_thread)
                elif t > 1 or chunks > 1:
                    # The update runs on the threads too, split over the
                    # parameters, unless clipping needs the whole gradient
                    # first.
                    loss_sum += nb * _threaded_step(
                        &net, &d, &params[0], &grad[0], &work[0], &scratch[0],
                        W, P, rows, start, nb, t, chunks, h.alpha, h.l1,
                        NULL if clip else &h, &state[0], taken, check_signals)
                else:
                    A0 = _forward(&net, &d, &params[0], &work[0], rows, start,
                                  nb, True)
                    loss_sum += nb * _backward(&net, &d, &params[0], &grad[0],
                                               &work[0], A0, rows, start, nb,
                                               h.alpha, h.l1, NULL)
                if (t == 1 and chunks == 1) or clip:
                    if clip:
                        _clip_gradient(&grad[0], P, h.clip_norm, h.clip_value)
                    _step(&h.rule, &params[0], &grad[0], &state[0], P, P,
                          taken)
                step = taken
                start += nb
                if check_signals:
                    since_check += nb * P
                    if since_check >= check_work:
                        since_check = 0
                        _check_signals()
    except BaseException as interrupt:
        interrupt.step = step
        raise
    if weightless:
        raise ValueError(_weightless(start, nb))
    return loss_sum, step


def _weightless(start, nb):
    return (f"the sample weights of a minibatch (rows {start} to {start + nb} "
            "of the epoch's order) sum to zero: its loss and gradient are "
            "undefined; use a larger batch_size or fewer zero weights")


def loss_grad(plan, const floating[:, ::1] X, csr, const floating[:, ::1] Y,
              const floating[::1] sample_weight, floating[::1] params,
              floating[::1] grad, floating[::1] work, double alpha,
              double l1=0.0, unsigned long long seed=0,
              floating[::1] running=None, int n_threads=1):
    """Full-batch loss (with the L2 and L1 terms); its gradient into grad.

    With dropout in the plan, the masks of seed apply (a fixed mask: the
    gradient is that of the loss with those units dropped). Batch norm uses
    the statistics of the whole batch; when running (of shape
    (plan.n_running,)) is given, it receives them: each layer's mean and
    unbiased variance (times n / (n - 1); n = 1 keeps the biased one).

    n_threads > 1 shares the rows among threads as a training step does
    (not with batch norm, nor for small batches); work then holds thread
    0's share only, so it cannot prepare hessian_vector_product. More than
    STEP_CHUNK_WORK rows x parameters (no batch norm) run in row chunks as
    a training step's do; work then holds the last chunk (which
    hessian_vector_product knows: it then recomputes).

    The plan must hold all n_samples rows in one pass. Used by the
    full-batch Objective: lbfgs, newton and the second-order tools.

    Raises
    ------
    KeyboardInterrupt (or whatever a signal handler raises)
        In the main thread, pending signals are checked between chunks; the
        exception leaves grad, work and running partly written.
    """
    cdef Net net
    cdef Data d
    cdef double loss
    cdef const floating* A0
    cdef Py_ssize_t P = params.shape[0], W = plan.work_size, chunks
    cdef Py_ssize_t chunk_work = STEP_CHUNK_WORK
    cdef bint check = threading.current_thread() is threading.main_thread()
    cdef int T
    arrays = _enter(plan, &net, &d, P, work.shape[0], _n_rows(X, csr), X, csr,
                    Y, sample_weight)
    if Y is None:
        raise ValueError("loss_grad needs targets")
    _check_flat(grad.shape[0], P, "grad")
    if running is not None:
        _check_flat(running.shape[0], plan.n_running, "running")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    net.seed = seed
    T = _step_threads(min(n_threads, MAX_THREADS), d.n_samples, P, &net)
    chunks = _step_chunks(d.n_samples, P, T, &net, chunk_work)
    cdef floating[::1] scratch = _scratch(
        &params[0], (T - 1) * (W + P) + (P if chunks > 1 else 0))
    with nogil:
        if T > 1 or chunks > 1:
            loss = _threaded_step(&net, &d, &params[0], &grad[0], &work[0],
                                  &scratch[0], W, P, NULL, 0, d.n_samples, T,
                                  chunks, alpha, l1, NULL, NULL, 0, check)
        else:
            A0 = _forward(&net, &d, &params[0], &work[0], NULL, 0, d.n_samples,
                          True)
            loss = _backward(&net, &d, &params[0], &grad[0], &work[0], A0,
                             NULL, 0, d.n_samples, alpha, l1, NULL)
        if running is not None and net.bn_off != NULL:
            _batch_statistics(&net, &work[0], d.n_samples, &running[0])
    return loss


cdef void _batch_statistics(Net* net, const floating* work, Py_ssize_t n,
                            floating* running) noexcept nogil:
    """Each batch-normalized layer's mean and unbiased variance of the pass
    just run (from its statistics in work) into running."""
    cdef Py_ssize_t l, j, m
    cdef const floating* stats
    cdef floating* run
    cdef floating unbias = <floating> (<double> n / (n - 1 if n > 1 else 1))
    for l in range(net.n_layers):
        if net.bn_off[l] < 0:
            continue
        m = net.units[l + 1]
        stats = work + net.bn_stat_off[l]
        run = running + net.run_off[l]
        for j in range(m):
            run[j] = stats[j]
            run[m + j] = stats[m + j] * unbias


cdef void _set_running(Net* net, object plan, floating[::1] running) except *:
    """Point net at the running statistics a plan with batch norm needs."""
    if plan.n_running == 0:
        return
    if running is None:
        raise ValueError("a plan with batch norm needs its running statistics")
    _check_flat(running.shape[0], plan.n_running, "running")
    net.running = &running[0]


def forward(plan, const floating[:, ::1] X, csr, const floating[::1] params,
            floating[::1] work, floating[:, ::1] out,
            floating[::1] running=None, int n_threads=1):
    """Network output for every row of X into out, plan.max_rows at a time.

    Batch-normalized layers use the running statistics (required then).
    With n_threads > 1, many blocks (at least 2 a thread) are shared among
    the threads, each computed whole in its thread's workspace (allocated
    here), as one thread computes them: the output does not depend on
    n_threads. Fewer blocks are computed one after another by all threads
    together, tile by tile (_tiles, about one a thread): the output is the
    same for the same n_threads and may differ from another's in the last
    bit.

    Raises
    ------
    KeyboardInterrupt (or whatever a signal handler raises)
        In the main thread, pending signals are checked between blocks every
        SIGNAL_CHECK_WORK multiply-adds: a long predict stops early.
    """
    cdef Net net
    cdef Data d
    cdef Py_ssize_t L, n_out, n_blocks, b, b0, b1, per_check
    cdef Py_ssize_t W = plan.work_size
    cdef int T
    cdef const floating[:, ::1] no_Y = None
    cdef const floating[::1] no_sw = None
    arrays = _enter(plan, &net, &d, params.shape[0], work.shape[0],
                    <Py_ssize_t> plan.max_rows, X, csr, no_Y, no_sw)
    L = net.n_layers
    n_out = net.units[L]
    if out.shape[0] != d.n_samples or out.shape[1] != n_out:
        raise ValueError(f"out must have shape ({d.n_samples}, {n_out})")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    _set_running(&net, plan, running)
    n_blocks = (d.n_samples + net.max_rows - 1) // net.max_rows
    if n_blocks == 0:
        return  # no rows (the tile rules below divide by them)
    cdef ForwardJob job
    job.net, job.d, job.params, job.out = &net, &d, &params[0], &out[0, 0]
    job.dbl = floating is double
    job.work[0] = &work[0]
    T = min(n_threads, MAX_THREADS)
    # Many blocks (or one thread): a thread a block, each block's products
    # whole. Few: all threads on each block's tiles (as many as the first
    # block's widest layer has).
    job.together = n_blocks < 2 * T
    job.tile_work = max(1, PREDICT_TILE_WORK) if job.together else UNTILED
    if job.together:
        T = min(T, _most_tiles(&net, d.sparse, min(net.max_rows, d.n_samples),
                               T, job.tile_work))
    else:
        T = min(T, n_blocks)
    T = max(1, T)
    if T == 1:
        job.tile_work = UNTILED
    job.want = T  # the tiles of T threads (at most T, the widest layer T)
    cdef floating[::1] scratch
    if T > 1 and not job.together:
        scratch = _scratch(&params[0], (T - 1) * W)
        for b in range(1, T):
            job.work[b] = &scratch[(b - 1) * W]
    # Blocks between two signal checks: at least 8 a thread, so a job's
    # start and end stay a small share of its work.
    per_check = max(8 * T, SIGNAL_CHECK_WORK // max(1, net.max_rows * params.shape[0]))
    check = n_blocks > per_check and (
        threading.current_thread() is threading.main_thread())
    b0 = 0
    while b0 < n_blocks:
        b1 = min(n_blocks, b0 + per_check)
        with nogil:
            if T > 1:
                # Blocks taken one at a time: a thread the OS holds back
                # takes fewer (each block is computed alike wherever it runs).
                job.next.v = b0
                job.end = b1
                barrier_init(&job.team.done, T)
                job.team.taken[0].v = 0
                job.team.taken[1].v = 0
                job.team.n = T
                job.team.elastic = job.together and b1 - b0 == 1
                if run(_forward_task, &job, T) != 0:
                    _no_threads(T)
            else:
                for b in range(b0, b1):
                    _forward_block(&net, &d, &params[0], &work[0], &out[0, 0],
                                   b, job.tile_work, 1, 0, NULL)
        b0 = b1
        if check:
            PyErr_CheckSignals()


cdef class Pass:
    """forward on one thread for dense rows, bound once to a plan and the
    parameters (and running statistics) it reads: ``Pass(plan, params,
    running)(X)`` is ``forward(plan, X, None, params, work, out, running,
    1)``'s out, bit for bit.

    The entry predict's small calls take (the caller keeps it with the
    fitted state): forward's per-call steps (the plan's views, seven typed
    views of the buffers, the workspace) cost a one-row pass more than its
    products. A call checks X against the plan and allocates out; the
    workspace is the C heap's. No signal checks: meant for passes of a few
    blocks.
    """
    cdef Net net
    cdef _Arrays arrays
    cdef object params, running, dtype
    cdef const void* p
    cdef bint dbl

    def __init__(self, plan, params, running=None):
        self.dbl = params.dtype == np.float64
        if self.dbl:
            _bind[double](self, plan, params, running)
        else:
            _bind[float](self, plan, params, running)
        self.params, self.running, self.dtype = params, running, params.dtype

    def __call__(self, X):
        if self.dbl:
            return _pass[double](self, X)
        return _pass[float](self, X)


cdef void _bind(Pass self, plan, const floating[::1] params,
                floating[::1] running) except *:
    self.arrays = _read_plan(plan, &self.net, params.shape[0], plan.work_size,
                             <Py_ssize_t> plan.max_rows)
    _set_running(&self.net, plan, running)
    self.p = &params[0]


cdef object _pass(Pass self, const floating[:, ::1] X):
    cdef Data d
    cdef Py_ssize_t b, n_blocks
    cdef const floating[:, ::1] no_Y = None
    cdef const floating[::1] no_sw = None, no_data = None
    cdef const Py_ssize_t[::1] no_index = None
    cdef floating* work
    cdef floating[:, ::1] out_v
    _check_data(&d, &self.net, X, None, no_Y, no_sw)
    _set_data(&d, X, no_data, no_index, no_index, no_Y, no_sw)
    out = np.empty((d.n_samples, self.net.units[self.net.n_layers]), dtype=self.dtype)
    if d.n_samples == 0:
        return out
    out_v = out
    n_blocks = (d.n_samples + self.net.max_rows - 1) // self.net.max_rows
    work = <floating*> PyMem_RawMalloc(self.arrays.work_size * sizeof(floating))
    if work == NULL:
        raise MemoryError()
    with nogil:
        for b in range(n_blocks):
            _forward_block(&self.net, &d, <const floating*> self.p, work,
                           &out_v[0, 0], b, UNTILED, 1, 0, NULL)
    PyMem_RawFree(work)
    return out


cdef struct ForwardJob:
    # Predict blocks b0 .. end on the pool's threads: each block on one
    # thread in its own workspace, or (together) each block on all of them.
    Net* net
    Data* d
    const void* params
    void* out
    void* work[MAX_THREADS]
    Word next
    Py_ssize_t end
    Py_ssize_t tile_work
    Py_ssize_t want
    Team team
    bint together
    bint dbl


cdef void _forward_task(void* ctx, int t) noexcept nogil:
    cdef ForwardJob* j = <ForwardJob*> ctx
    cdef Py_ssize_t b
    if j.together:  # every thread through every block, in order
        for b in range(j.next.v, j.end):
            if j.dbl:
                _forward_block(j.net, j.d, <const double*> j.params,
                               <double*> j.work[0], <double*> j.out, b, j.tile_work,
                               j.want, t, &j.team)
            else:
                _forward_block(j.net, j.d, <const float*> j.params,
                               <float*> j.work[0], <float*> j.out, b, j.tile_work,
                               j.want, t, &j.team)
        return
    while True:
        b = next_item(&j.next)
        if b >= j.end:
            return
        if j.dbl:
            _forward_block(j.net, j.d, <const double*> j.params,
                           <double*> j.work[t], <double*> j.out, b, j.tile_work,
                           1, 0, NULL)
        else:
            _forward_block(j.net, j.d, <const float*> j.params,
                           <float*> j.work[t], <float*> j.out, b, j.tile_work,
                           1, 0, NULL)


def predict_tiles(Py_ssize_t rows, Py_ssize_t fan_in, Py_ssize_t fan_out,
                  int n_threads, bint dense=True, tile_work=None):
    """(rows a chunk, columns a panel) of a predict block's product of
    (rows, fan_in) by (fan_in, fan_out) on n_threads: the size rule, for
    tests and docs."""
    cdef Py_ssize_t chunk, panel
    _tiles(rows, fan_in, fan_out, dense, n_threads,
           max(1, PREDICT_TILE_WORK if tile_work is None else tile_work),
           &chunk, &panel)
    return chunk, panel


cdef Py_ssize_t _most_tiles(Net* net, bint sparse, Py_ssize_t nb,
                            Py_ssize_t want, Py_ssize_t tile_work) noexcept nogil:
    """Tiles of the widest layer of an nb-row block."""
    cdef Py_ssize_t l, chunk, panel, most = 1
    for l in range(net.n_layers):
        _tiles(nb, net.units[l], net.units[l + 1], l > 0 or not sparse, want,
               tile_work, &chunk, &panel)
        most = max(most, _n_tiles(nb, net.units[l + 1], chunk, panel))
    return most


cdef void _gemm_tile(bint ta, bint tb, Py_ssize_t n, Py_ssize_t m,
                     Py_ssize_t k, const floating* A, Py_ssize_t lda,
                     const floating* B, Py_ssize_t ldb, floating* C,
                     Py_ssize_t ldc, Py_ssize_t chunk, Py_ssize_t panel,
                     Py_ssize_t i) noexcept nogil:
    """Tile i (row-major over chunk x panel tiles) of C (n, m) = op(A) op(B),
    op(A) (n, k), row-major with row strides lda, ldb, ldc: rows i // panels
    chunk .. and columns i % panels panel .. of C. A one-row tile of
    ROW_GEMV_WORK or more goes through gemv. The one tile loop of predict's
    blocks and of a training step's products, forward and backward."""
    cdef Py_ssize_t panels = (m + panel - 1) // panel
    cdef Py_ssize_t r0 = i // panels * chunk, c0 = i % panels * panel
    cdef Py_ssize_t nr = min(chunk, n - r0), nc = min(panel, m - c0)
    cdef const floating* a = A + (r0 if ta else r0 * lda)
    cdef const floating* b = B + (c0 * ldb if tb else c0)
    if not ta and not tb and nr == 1 and nc * k >= ROW_GEMV_WORK:
        _row_gemv(nc, k, a, b, ldb, C + r0 * ldc + c0)
    else:
        gemm(ta, tb, nr, nc, k, 1, a, lda, b, ldb, 0, C + r0 * ldc + c0, ldc)


cdef void _forward_block(Net* net, Data* d, const floating* params,
                         floating* work, floating* out, Py_ssize_t b,
                         Py_ssize_t tile_work, Py_ssize_t want, int t,
                         Team* team) noexcept nogil:
    """Predict block b (rows b max_rows ..) into its rows of out, as thread t
    of the team that shares it (team NULL: alone).

    Layer by layer (row chunks through all the layers where _row_chunk
    says so): the products' tiles, each taken by whichever thread
    comes first, then (when all are done) batch norm, bias and activation
    chunk by chunk, thread t taking chunks t, t + T, ... (batch-norm
    layers: thread 0 all, their statistics are shared). The tiles come from
    the block's shape and want (about T), whichever threads take them: the
    same want gives the same result. In a one-block job (team.elastic) the
    workers that have not started when the first layer's tiles are all
    taken are withdrawn, and t and T become the place and number of those
    left.
    """
    cdef Py_ssize_t start = b * net.max_rows, L = net.n_layers
    cdef Py_ssize_t nb = min(net.max_rows, d.n_samples - start)
    cdef Py_ssize_t l, k, m, chunk, panel, chunks, n, i, r0, nr
    cdef const floating* A = NULL
    cdef floating* Z
    cdef bint dense
    cdef int T = 1 if team == NULL else team.n
    cdef int me = t  # this thread's place among those taking part
    cdef Word* taken
    if team != NULL:
        chunk = _row_chunk(net, d.sparse, nb, want, tile_work)
        if chunk > 0:
            _forward_rows(net, d, params, work, out, b, chunk, t, team)
            return
    if not d.sparse:
        A = <const floating*> d.X + start * d.n_features
    for l in range(L):
        k = net.units[l]
        m = net.units[l + 1]
        Z = work + net.act_off[l]
        dense = l > 0 or not d.sparse
        _tiles(nb, k, m, dense, want, tile_work, &chunk, &panel)
        chunks = (nb + chunk - 1) // chunk
        n = _n_tiles(nb, m, chunk, panel)
        # Blocks follow each other: layer l of block b is the team's
        # (b L + l)-th, and takes the counter of that parity.
        taken = &team.taken[(b * L + l) % 2] if team != NULL else NULL
        i = 0 if team == NULL else next_item(taken)
        while i < n:
            if dense:
                _gemm_tile(False, False, nb, m, k, A, k,
                           params + net.coef_off[l], m, Z, m, chunk, panel, i)
            else:
                r0 = i * chunk
                _csr_forward(<const floating*> d.data, d.indices, d.indptr,
                             NULL, start + r0, min(chunk, nb - r0),
                             params + net.coef_off[0], m, Z + r0 * m)
            i = i + 1 if team == NULL else next_item(taken)
        if team != NULL:
            if l == 0 and t == 0 and team.elastic:
                # The first layer's tiles are all taken: workers not started
                # yet are withdrawn (as in _forward_rows), the rest numbered.
                withdraw_unstarted(&team.done)
            barrier_wait(&team.done)
            if l == 0 and team.elastic:
                me = team_rank(t, &T)
            if t == 0:  # the next layer's counter; its last users are done
                team.taken[(b * L + l + 1) % 2].v = 0
        for i in range(chunks):
            if (i % T if net.bn_off == NULL or net.bn_off[l] < 0 else 0) != me:
                continue
            r0 = i * chunk
            nr = min(chunk, nb - r0)
            _activate(net, params, work, l, r0, nr, False)
            if l == L - 1:
                memcpy(out + (start + r0) * m, Z + r0 * m,
                       nr * m * sizeof(floating))
        if team != NULL:
            barrier_wait(&team.done)
        A = Z


cdef Py_ssize_t _row_chunk(Net* net, bint sparse, Py_ssize_t nb,
                           Py_ssize_t want, Py_ssize_t tile_work) noexcept nogil:
    """Rows a chunk of an nb-row block whose every layer's tiles are row
    chunks (no column panels) and that has no batch norm (its statistics
    buffer is the block's): the finest layer's chunk, which _forward_rows
    takes through all the layers at once; else 0. From the shape and
    want."""
    cdef Py_ssize_t l, chunk, panel, rows = nb
    for l in range(net.n_layers):
        if net.bn_off != NULL and net.bn_off[l] >= 0:
            return 0
        _tiles(nb, net.units[l], net.units[l + 1], l > 0 or not sparse,
               want, tile_work, &chunk, &panel)
        if panel < net.units[l + 1]:
            return 0
        rows = min(rows, chunk)
    return rows


cdef void _forward_rows(Net* net, Data* d, const floating* params,
                        floating* work, floating* out, Py_ssize_t b,
                        Py_ssize_t chunk, int t, Team* team) noexcept nogil:
    """Block b as row chunks, each taken by whichever thread comes first and
    taken through every layer there (its products whole, then bias and
    activation): no barrier between layers, and a chunk's activations stay
    in its thread's cache. Narrow networks' blocks: layer by layer they
    were as slow on 2 threads as on 1 (barrier-bound; docs/design.md).
    Ends the block as _forward_block's layers do: the counter of the next
    block's first layer reset between two barriers."""
    cdef Py_ssize_t start = b * net.max_rows, L = net.n_layers
    cdef Py_ssize_t nb = min(net.max_rows, d.n_samples - start)
    cdef Py_ssize_t n = (nb + chunk - 1) // chunk, l, k, m, i, r0, nr
    cdef const floating* A
    cdef floating* Z = NULL
    cdef Word* taken = &team.taken[(b * L) % 2]
    i = next_item(taken)
    while i < n:
        r0 = i * chunk
        nr = min(chunk, nb - r0)
        A = NULL if d.sparse else <const floating*> d.X + (start + r0) * d.n_features
        for l in range(L):
            k = net.units[l]
            m = net.units[l + 1]
            Z = work + net.act_off[l] + r0 * m
            if l > 0 or not d.sparse:
                _gemm_tile(False, False, nr, m, k, A, k, params + net.coef_off[l],
                           m, Z, m, nr, m, 0)
            else:
                _csr_forward(<const floating*> d.data, d.indices, d.indptr,
                             NULL, start + r0, nr, params + net.coef_off[0], m, Z)
            _activate(net, params, work, l, r0, nr, False)
            A = Z
        memcpy(out + (start + r0) * m, Z, nr * m * sizeof(floating))
        i = next_item(taken)
    if t == 0 and team.elastic:
        # Every chunk is taken: a worker still waking up would only make
        # the caller wait for it (a predict after a pause: 550 us on 2
        # threads, 460 on one). Barriers then count who is left.
        withdraw_unstarted(&team.done)
    barrier_wait(&team.done)
    if t == 0:
        team.taken[((b + 1) * L) % 2].v = 0
    barrier_wait(&team.done)


def all_finite(const floating[::1] a):
    """True when every entry of a is finite (one pass, no temporaries).

    x - x is 0 for a finite x and NaN for an infinity or NaN, and a sum
    with a NaN in it is NaN: so "all finite" is "the sums of x - x are 0".
    FINITE_LANES independent sums, which the compiler vectorizes (a test
    and branch per entry ran 1-2 ns an entry here, 5-10x slower), looked at
    every FINITE_BLOCK entries to stop at the first block with a bad one."""
    cdef Py_ssize_t i = 0, j, k, n = a.shape[0]
    cdef floating lanes[FINITE_LANES]
    cdef floating total = 0
    with nogil:
        for k in range(FINITE_LANES):
            lanes[k] = 0
        while i + FINITE_LANES <= n and total == 0:
            j = min(n - FINITE_LANES, i + FINITE_BLOCK)
            while i <= j:
                for k in range(FINITE_LANES):
                    lanes[k] += a[i + k] - a[i + k]
                i += FINITE_LANES
            for k in range(FINITE_LANES):
                total += lanes[k]
        for j in range(i, n):
            total += a[j] - a[j]
    return total == 0
