"""Exact second-order quantities: Hessian-vector products, input Jacobians.

``hessian_vector_product`` applies Pearlmutter's R-operator (forward over
reverse): after the ordinary forward and backward passes of ``_epoch``, one
more forward pass carries the directional derivative R{.} = d/dr (.)(w + r v)
of every pre-activation and activation, and one more backward pass carries
R{delta}, giving R{grad} = H v exactly, at the cost of about two gradients.
``jacobian`` backpropagates each output unit to the input.
Twins: ``fastbp._reference.hessian_vector_product``, ``jacobian``.

For the layers l = 0 .. L-1 (A_{-1} = X, R{A_{-1}} = 0), with sample weights
w_i summing to S and V_W, V_b the parts of v:

    R{Z_l} = A_{l-1} V_W + R{A_{l-1}} W + V_b,   R{A_l} = f'(Z_l) R{Z_l}
    R{D_L} = w * J_g(Z_L) R{Z_L}                 (g the output function)
    H v (W_l) = (A_{l-1}^T R{D_l} + R{A_{l-1}}^T D_l + alpha V_W) / S
    H v (b_l) = sum_rows R{D_l} / S
    R{D_{l-1}} = (R{D_l} W^T + D_l V_W^T) f'(Z) + (D_l W^T) f''(Z) R{Z}

Where f' never vanishes the last term is D_{l-1} (f''/f')(Z) R{Z}, and
f''/f' is a function of A = f(Z): 1 - 2A (logistic), -2A (tanh), 0
(identity, relu, leaky_relu), 1 below 0 and 0 above (elu), exp(-A)
(softplus), -2 sign(A) (1 - |A|) (softsign). GELU and SiLU have f' = 0
somewhere (z = -0.75 and -1.28), so their term takes f''(Z) from the
pre-activation the plan keeps for them, times D_l W^T recomputed into
rwork at pre_off[l-1]: phi(z) (2 - z^2) for GELU, s (1 - s) (2 + z (1 - 2 s))
with s = logistic(z) for SiLU. ELU and softsign's f'' jump at 0 (leaky
relu's and relu's f' already do): there the value is that of z < 0 (elu)
or the mean of both sides, 0 (softsign).

The workspace ``rwork`` has the plan's layout: R{Z_l} at act_off[l]; at
delta_off[l] first R{A_l}, then R{D_l} (R{A_l} is dead once the backward
pass reaches layer l + 1); pre_off[l] (GELU, SiLU) is scratch.
"""
import threading

import numpy as np

from cpython.exc cimport PyErr_CheckSignals
from cython cimport floating

from fastbp._blas cimport _gemm as gemm
from fastbp import _epoch as _epoch_module
from fastbp._epoch cimport (
    Data, Net, _add_penalty, _backward, _check_signals, _enter, _forward,
    _n_rows, _step_chunks,
)
from fastbp._families import ACTIVATIONS as _ACTIVATION_ROWS, LOSSES as _LOSS_ROWS
from fastbp._kernels import ACTIVATIONS
from fastbp._kernels cimport (
    ABSOLUTE_ERROR, ELU, EXP, GAMMA, GELU, HUBER, LOGISTIC, QUANTILE, SILU,
    SOFTMAX, SOFTPLUS, SOFTSIGN, TANH,
    _act_grad, _bias_grad, _csr_forward, _csr_grad, _exp, _l2_grad, _logistic,
    _needs_preactivation,
)
from libc.math cimport fabs

# 1 / sqrt(2 pi), for the normal density in GELU's f''.
cdef double _INV_SQRT_2PI = 0.39894228040143267794

# Hidden activations and (output, loss) heads the curvature code knows: the
# first four pair a loss with its canonical link (output delta P - Y, output
# curvature J_g); the others' curvature in z is _output_r's.
HIDDEN_ACTIVATIONS = tuple(a.code for a in _ACTIVATION_ROWS if a.hidden)
_ACTIVATION_NAMES = {code: name for name, code in ACTIVATIONS.items()}
HEADS = tuple((ACTIVATIONS[loss.output], loss.code) for loss in _LOSS_ROWS)


cdef void _add_bias(floating* Z, const floating* b, Py_ssize_t n,
                    Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(m):
            Z[i * m + j] = Z[i * m + j] + b[j]


cdef void _output_r(const floating* P, const floating* RZ, const floating* sw,
                    const floating* Y, Py_ssize_t n, Py_ssize_t m, int out_act,
                    int loss, double loss_param, floating* out) noexcept nogil:
    """out = w * (d delta / d z) R{Z} row by row: R of the output delta.

    Canonical pairs (delta (P - Y) w): d delta / d z = w J_g(Z). The other
    losses' second derivative in z, elementwise: huber 1 where |p - y| <=
    delta (scikit-learn's HuberLoss), else 0; absolute_error and quantile 0
    (their delta is piecewise constant: the Hessian holds the hidden layers'
    curvature only, exact wherever no p equals its y); gamma y / p.
    """
    cdef Py_ssize_t i, k
    cdef floating w = 1, s
    cdef const floating* p
    cdef const floating* rz
    cdef const floating* y
    cdef floating* o
    for i in range(n):
        if sw != NULL:
            w = sw[i]
        p = P + i * m
        rz = RZ + i * m
        y = Y + i * m
        o = out + i * m
        if loss == HUBER:
            for k in range(m):
                o[k] = w * rz[k] if fabs(p[k] - y[k]) <= loss_param else 0
        elif loss == ABSOLUTE_ERROR or loss == QUANTILE:
            for k in range(m):
                o[k] = 0
        elif loss == GAMMA:
            for k in range(m):
                o[k] = w * (y[k] / p[k]) * rz[k]
        elif out_act == SOFTMAX:
            # J = diag(P) - P P^T
            s = 0
            for k in range(m):
                s = s + p[k] * rz[k]
            for k in range(m):
                o[k] = w * p[k] * (rz[k] - s)
        elif out_act == LOGISTIC:
            for k in range(m):
                o[k] = w * p[k] * (1 - p[k]) * rz[k]
        elif out_act == EXP:
            for k in range(m):
                o[k] = w * p[k] * rz[k]
        else:
            for k in range(m):
                o[k] = w * rz[k]


cdef void _curvature_term(const floating* A, const floating* D,
                          const floating* RZ, floating* RD, Py_ssize_t size,
                          int act) noexcept nogil:
    """RD += D * (f''/f')(Z) * R{Z}, written through A = f(Z).

    For the activations whose f' has no zero (all but GELU and SiLU).
    """
    cdef Py_ssize_t i
    cdef floating a
    if act == LOGISTIC:
        for i in range(size):
            RD[i] = RD[i] + D[i] * (1 - 2 * A[i]) * RZ[i]
    elif act == TANH:
        for i in range(size):
            RD[i] = RD[i] - 2 * D[i] * A[i] * RZ[i]
    elif act == ELU:
        # f'' = f' = exp(z) below 0, both sides' f'' = 0 above.
        for i in range(size):
            if not A[i] > 0:
                RD[i] = RD[i] + D[i] * RZ[i]
    elif act == SOFTPLUS:
        # f' = s, f'' = s (1 - s), 1 - s = exp(-A).
        for i in range(size):
            RD[i] = RD[i] + D[i] * _exp(-A[i]) * RZ[i]
    elif act == SOFTSIGN:
        # f' = (1 + |z|)^-2, f'' = -2 sign(z) (1 + |z|)^-3, 1 + |z| = 1 / (1 - |A|).
        for i in range(size):
            a = -2 * (1 - fabs(A[i]))
            if A[i] < 0:
                a = -a
            elif A[i] == 0:
                a = 0
            RD[i] = RD[i] + D[i] * a * RZ[i]


cdef void _curvature_term_pre(const floating* Z, const floating* G,
                              const floating* RZ, floating* RD,
                              Py_ssize_t size, int act) noexcept nogil:
    """RD += G * f''(Z) * R{Z}, G the delta before f' (GELU and SiLU)."""
    cdef Py_ssize_t i
    cdef floating z, s
    if act == GELU:
        # f' = Phi(z) + z phi(z), f'' = phi(z) (2 - z^2).
        for i in range(size):
            z = Z[i]
            RD[i] = RD[i] + G[i] * <floating> _INV_SQRT_2PI * _exp(
                <floating> -0.5 * z * z) * (2 - z * z) * RZ[i]
    elif act == SILU:
        # f' = s (1 + z (1 - s)), f'' = s (1 - s) (2 + z (1 - 2 s)).
        for i in range(size):
            z = Z[i]
            s = _logistic(z)
            RD[i] = RD[i] + G[i] * s * (1 - s) * (2 + z * (1 - 2 * s)) * RZ[i]


cdef inline const floating* _pre(Net* net, floating* work,
                                 Py_ssize_t l) noexcept nogil:
    """Layer l's pre-activations in work, NULL when the plan keeps none."""
    return work + net.pre_off[l] if net.pre_off[l] >= 0 else NULL


cdef void _r_pass(Net* net, Data* d, const floating* params,
                  const floating* v, floating* out, floating* work,
                  floating* rwork, const floating* A0, double alpha,
                  double sw_sum) noexcept nogil:
    """H v into out, after _forward and _backward filled work (see above)."""
    cdef Py_ssize_t l, L = net.n_layers, n = d.n_samples, fan_in, fan_out
    cdef const floating* A_prev
    cdef const floating* sw = <const floating*> d.sw
    cdef floating* RZ
    cdef floating* R2
    cdef floating* RD_prev
    cdef floating* G
    cdef Py_ssize_t i
    for l in range(L):
        fan_in = net.units[l]
        fan_out = net.units[l + 1]
        RZ = rwork + net.act_off[l]
        R2 = rwork + net.delta_off[l]
        A_prev = A0 if l == 0 else work + net.act_off[l - 1]
        if l == 0 and d.sparse:
            _csr_forward(<const floating*> d.data, d.indices, d.indptr, NULL, 0,
                         n, v + net.coef_off[0], fan_out, RZ)
        else:
            gemm(False, False, n, fan_out, fan_in, 1, A_prev, fan_in,
                 v + net.coef_off[l], fan_out, 0, RZ, fan_out)
        if l > 0:
            gemm(False, False, n, fan_out, fan_in, 1,
                 rwork + net.delta_off[l - 1], fan_in, params + net.coef_off[l],
                 fan_out, 1, RZ, fan_out)
        _add_bias(RZ, v + net.bias_off[l], n, fan_out)
        if l < L - 1:
            for i in range(n * fan_out):
                R2[i] = RZ[i]
            _act_grad(work + net.act_off[l], _pre(net, work, l), R2, n,
                      fan_out, net.acts[l])
        else:
            _output_r(work + net.act_off[l], RZ, sw,
                      <const floating*> d.Y, n, fan_out, net.out_act,
                      net.loss, net.loss_param, R2)
    for l in range(L - 1, -1, -1):
        fan_in = net.units[l]
        fan_out = net.units[l + 1]
        R2 = rwork + net.delta_off[l]
        A_prev = A0 if l == 0 else work + net.act_off[l - 1]
        if l == 0 and d.sparse:
            _csr_grad(<const floating*> d.data, d.indices, d.indptr, NULL, 0, n,
                      R2, fan_in, fan_out, out + net.coef_off[0])
        else:
            gemm(True, False, fan_in, fan_out, n, 1, A_prev, fan_in, R2,
                 fan_out, 0, out + net.coef_off[l], fan_out)
        if l > 0:
            gemm(True, False, fan_in, fan_out, n, 1,
                 rwork + net.delta_off[l - 1], fan_in, work + net.delta_off[l],
                 fan_out, 1, out + net.coef_off[l], fan_out)
        _l2_grad(out + net.coef_off[l], v + net.coef_off[l], fan_in * fan_out,
                 <floating> alpha, <floating> sw_sum)
        _bias_grad(R2, n, fan_out, <floating> sw_sum, out + net.bias_off[l])
        if l > 0:
            # R{A_{l-1}} was used just above; R{D_{l-1}} takes its place.
            RD_prev = rwork + net.delta_off[l - 1]
            gemm(False, True, n, fan_in, fan_out, 1, R2, fan_out,
                 params + net.coef_off[l], fan_out, 0, RD_prev, fan_in)
            gemm(False, True, n, fan_in, fan_out, 1, work + net.delta_off[l],
                 fan_out, v + net.coef_off[l], fan_out, 1, RD_prev, fan_in)
            _act_grad(work + net.act_off[l - 1], _pre(net, work, l - 1),
                      RD_prev, n, fan_in, net.acts[l - 1])
            if _needs_preactivation(net.acts[l - 1]):
                # D_l W^T into the scratch rows at pre_off: f' has zeros.
                G = rwork + net.pre_off[l - 1]
                gemm(False, True, n, fan_in, fan_out, 1,
                     work + net.delta_off[l], fan_out,
                     params + net.coef_off[l], fan_out, 0, G, fan_in)
                _curvature_term_pre(work + net.pre_off[l - 1], G,
                                    rwork + net.act_off[l - 1], RD_prev,
                                    n * fan_in, net.acts[l - 1])
            else:
                _curvature_term(work + net.act_off[l - 1],
                                work + net.delta_off[l - 1],
                                rwork + net.act_off[l - 1], RD_prev,
                                n * fan_in, net.acts[l - 1])


cdef void _output_grad_rows(const floating* P, Py_ssize_t n, Py_ssize_t m,
                            Py_ssize_t k, int out_act,
                            floating* out) noexcept nogil:
    """out[i, :] = d P[i, k] / d Z[i, :] (J_g is symmetric for every g)."""
    cdef Py_ssize_t i, j
    cdef const floating* p
    cdef floating* o
    for i in range(n):
        p = P + i * m
        o = out + i * m
        for j in range(m):
            o[j] = 0
        if out_act == SOFTMAX:
            for j in range(m):
                o[j] = -p[k] * p[j]
            o[k] = o[k] + p[k]
        elif out_act == LOGISTIC:
            o[k] = p[k] * (1 - p[k])
        elif out_act == EXP:
            o[k] = p[k]
        else:
            o[k] = 1


cdef void _jacobian(Net* net, Data* d, const floating* params, floating* work,
                    Py_ssize_t row0, Py_ssize_t nb,
                    floating* out) noexcept nogil:
    """out[r, k, :] = d output[row0 + r, k] / d X[row0 + r, :], r < nb."""
    cdef Py_ssize_t l, k, L = net.n_layers, m = net.units[L]
    cdef Py_ssize_t F = net.units[0], fan_in, fan_out
    _forward(net, d, params, work, NULL, row0, nb, False)
    for k in range(m):
        _output_grad_rows(work + net.act_off[L - 1], nb, m, k, net.out_act,
                          work + net.delta_off[L - 1])
        for l in range(L - 1, 0, -1):
            fan_in = net.units[l]
            fan_out = net.units[l + 1]
            gemm(False, True, nb, fan_in, fan_out, 1, work + net.delta_off[l],
                 fan_out, params + net.coef_off[l], fan_out, 0,
                 work + net.delta_off[l - 1], fan_in)
            _act_grad(work + net.act_off[l - 1], _pre(net, work, l - 1),
                      work + net.delta_off[l - 1], nb, fan_in, net.acts[l - 1])
        gemm(False, True, nb, F, net.units[1], 1, work + net.delta_off[0],
             net.units[1], params + net.coef_off[0], net.units[1], 0,
             out + k * F, m * F)


cdef void _check_codes(Net* net) except *:
    cdef Py_ssize_t l
    for l in range(net.n_layers - 1):
        if net.acts[l] not in HIDDEN_ACTIVATIONS:
            raise ValueError(
                f"{_ACTIVATION_NAMES.get(net.acts[l], net.acts[l])!r} is not a "
                f"hidden activation (layer {l + 1})")
        if net.drop[l] != 0:
            raise ValueError("the curvature tools take a plan without dropout")
    if (net.out_act, net.loss) not in HEADS:
        raise ValueError(f"output activation code {net.out_act} with loss code "
                         f"{net.loss} is not a canonical pair")


cdef inline void _check_length(Py_ssize_t n, Py_ssize_t expected,
                               str what) except *:
    if n != expected:
        raise ValueError(f"{what} has length {n}, expected {expected}")


def hessian_vector_product(plan, const floating[:, ::1] X, csr,
                           const floating[:, ::1] Y,
                           const floating[::1] sample_weight,
                           const floating[::1] params, const floating[::1] v,
                           floating[::1] out, floating[::1] work,
                           floating[::1] rwork, double alpha,
                           bint prepared=False):
    """Exact Hessian of the full-batch objective times v, into out.

    Parameters
    ----------
    plan : Plan
        Layout from ``fastbp._network.make_plan``, holding every row in one
        pass (max_rows >= n_samples).
    X : ndarray of shape (n_samples, n_features); (0, n_features) with csr
    csr : (data, indices, indptr) of CSR input with intp indices, or None
    Y : ndarray of shape (n_samples, n_outputs)
    sample_weight : ndarray of shape (n_samples,) or None
    params, v, out : ndarray of shape (n_params,)
        out must not share memory with params or v.
    work, rwork : ndarray of shape (plan.work_size,)
    alpha : float
        L2 strength, as in ``loss_grad``.
    prepared : bool, default=False
        True when work already holds the forward and backward passes at
        these params and data (left by ``_epoch.loss_grad`` or by this
        function, with the same plan): they are reused, saving about a
        third of the cost. A stale work gives wrong numbers, never an
        out-of-bounds access.

    Returns
    -------
    loss : float
        The loss ``loss_grad`` returns at params; NaN when prepared.

    Raises
    ------
    KeyboardInterrupt (or whatever a signal handler raises)
        More than ``_epoch.STEP_CHUNK_WORK`` rows x parameters run in row
        chunks (each its forward, backward and R passes, the shares of H v
        summed in chunk order), pending signals checked between them in the
        main thread; the exception leaves out, work and rwork partly
        written. Chunked, work is never reused (``loss_grad`` left only its
        last chunk there): prepared only makes the loss NaN.

    Notes
    -----
    The objective is the one whose gradient ``loss_grad`` computes: for
    squared error that is half the squared error summed (not averaged) over
    outputs, as scikit-learn's gradient.
    """
    cdef Net net
    cdef Data d, part
    cdef double loss, sw_sum = 0, total = 0, part_sw
    cdef Py_ssize_t i, c, lo, hi, chunks, P = params.shape[0], L, F, m
    cdef Py_ssize_t chunk_work = _epoch_module.STEP_CHUNK_WORK
    cdef bint check = threading.current_thread() is threading.main_thread()
    cdef const floating* A0
    cdef floating* g
    cdef floating[::1] share
    arrays = _enter(plan, &net, &d, P, work.shape[0], _n_rows(X, csr), X, csr,
                    Y, sample_weight)
    _check_codes(&net)
    if Y is None:
        raise ValueError("hessian_vector_product needs targets")
    _check_length(v.shape[0], P, "v")
    _check_length(out.shape[0], P, "out")
    if rwork.shape[0] < plan.work_size:
        raise ValueError(f"rwork has length {rwork.shape[0]}, the plan needs "
                         f"{plan.work_size}")
    if &out[0] == &params[0] or &out[0] == &v[0]:
        raise ValueError("out must not share memory with params or v")
    if sample_weight is None:
        sw_sum = d.n_samples
    else:
        for i in range(d.n_samples):
            sw_sum += sample_weight[i]
    loss = float("nan")
    chunks = _step_chunks(d.n_samples, P, 1, &net, chunk_work)
    if chunks > 1:
        L = net.n_layers
        F = net.units[0]
        m = net.units[L]
        share = _like(&out[0], P)
        with nogil:
            for c in range(chunks):
                # Rows [lo, hi) as data of their own (CSR row pointers stay
                # offsets into the whole data and indices).
                lo = d.n_samples * c // chunks
                hi = d.n_samples * (c + 1) // chunks
                part = d
                part.n_samples = hi - lo
                if not d.sparse:
                    part.X = <const floating*> d.X + lo * F
                else:
                    part.indptr = d.indptr + lo
                part.Y = <const floating*> d.Y + lo * m
                if d.sw != NULL:
                    part.sw = <const floating*> d.sw + lo
                g = &out[0] if c == 0 else &share[0]
                A0 = _forward(&net, &part, &params[0], &work[0], NULL, 0,
                              hi - lo, False)
                # Sums, not means: no penalty, no division (x / 1 is x).
                total += _backward(&net, &part, &params[0], g, &work[0], A0,
                                   NULL, 0, hi - lo, 0, 0, &part_sw)
                _r_pass(&net, &part, &params[0], &v[0], g, &work[0], &rwork[0],
                        A0, 0, 1)
                if c > 0:
                    for i in range(P):
                        out[i] = out[i] + g[i]
                if check and c < chunks - 1:
                    _check_signals()
            _finish_hv(&net, &out[0], &v[0], alpha, sw_sum)
            if not prepared:
                loss = _add_penalty(&net, &params[0], alpha, 0, sw_sum,
                                    total / sw_sum)
        return loss
    with nogil:
        if prepared:
            # What _forward returns for a full batch without a row order.
            A0 = NULL if d.sparse else <const floating*> d.X
        else:
            A0 = _forward(&net, &d, &params[0], &work[0], NULL, 0, d.n_samples,
                          False)
            # The gradient lands in out first, then H v overwrites all of it.
            loss = _backward(&net, &d, &params[0], &out[0], &work[0], A0, NULL,
                             0, d.n_samples, alpha, 0, NULL)
        _r_pass(&net, &d, &params[0], &v[0], &out[0], &work[0], &rwork[0], A0,
                alpha, sw_sum)
    return loss


cdef floating[::1] _like(const floating* like, Py_ssize_t n):
    """Buffer of n of like's type."""
    return np.empty(n, np.float64 if floating is double else np.float32)


cdef void _finish_hv(Net* net, floating* out, const floating* v, double alpha,
                     double sw_sum) noexcept nogil:
    """The summed chunks' H v sums to H v, as _r_pass finishes a whole pass:
    (sum + alpha V_W) / S for coefficients, sum / S for intercepts."""
    cdef Py_ssize_t l, j, fan_out
    for l in range(net.n_layers):
        fan_out = net.units[l + 1]
        _l2_grad(out + net.coef_off[l], v + net.coef_off[l],
                 net.units[l] * fan_out, <floating> alpha, <floating> sw_sum)
        for j in range(fan_out):
            out[net.bias_off[l] + j] = out[net.bias_off[l] + j] / \
                <floating> sw_sum


def jacobian(plan, const floating[:, ::1] X, csr, const floating[::1] params,
             floating[::1] work, floating[:, :, ::1] out):
    """d output / d input of every row of X, plan.max_rows rows at a time.

    Parameters
    ----------
    plan : Plan
    X : ndarray of shape (n_samples, n_features); (0, n_features) with csr
    csr : (data, indices, indptr) of CSR input with intp indices, or None
    params : ndarray of shape (n_params,)
    work : ndarray of shape (plan.work_size,)
    out : C-contiguous ndarray of shape (n_samples, n_outputs, n_features)
        out[i, k, j] = d output[i, k] / d X[i, j], the output being the
        output layer's activation (probabilities, predictions).
    """
    cdef Net net
    cdef Data d
    cdef Py_ssize_t start, nb, L, n_out
    cdef const floating[:, ::1] no_Y = None
    cdef const floating[::1] no_sw = None
    arrays = _enter(plan, &net, &d, params.shape[0], work.shape[0],
                    <Py_ssize_t> plan.max_rows, X, csr, no_Y, no_sw)
    _check_codes(&net)
    L = net.n_layers
    n_out = net.units[L]
    if (out.shape[0] != d.n_samples or out.shape[1] != n_out
            or out.shape[2] != net.units[0]):
        raise ValueError(f"out must have shape ({d.n_samples}, {n_out}, "
                         f"{net.units[0]})")
    # Pending signals are checked after every block (main thread only): a
    # long jacobian stops at the next block.
    check = threading.current_thread() is threading.main_thread()
    start = 0
    while start < d.n_samples:
        nb = min(net.max_rows, d.n_samples - start)
        with nogil:
            _jacobian(&net, &d, &params[0], &work[0], start, nb,
                      &out[start, 0, 0])
        start += nb
        if check:
            PyErr_CheckSignals()
