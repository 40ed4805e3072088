"""Compiled building blocks of the forward and backward passes.

Each ``cdef`` core works on raw pointers into buffers the caller has checked;
each ``def`` wrapper checks shapes, releases the GIL once and calls its core.
Every wrapper has a NumPy twin of the same name in ``fastbp._reference``.
"""
cimport numpy as cnp
from cython cimport floating
from libc.math cimport frexp, isfinite, sqrt
from libc.string cimport memcpy, memset

from fastbp._simd cimport avx2_void, rule_void, use_avx2

import inspect

import numpy as np
import scipy.special

from fastbp._families import ACTIVATIONS as _ACTIVATION_ROWS, LOSSES as _LOSS_ROWS

# From the table: name -> code, and the codes whose derivative needs the
# pre-activation Z, not only act(Z) (also as a C table for nogil code).
ACTIVATIONS = {a.name: a.code for a in _ACTIVATION_ROWS}
NEEDS_PREACTIVATION = frozenset(
    a.code for a in _ACTIVATION_ROWS if a.needs_preactivation)
cdef enum:
    _MAX_CODES = 64
cdef bint _NEEDS_PRE[_MAX_CODES]
if not 0 <= min(ACTIVATIONS.values()) <= max(ACTIVATIONS.values()) < _MAX_CODES:
    raise ImportError(f"activation codes must lie in [0, {_MAX_CODES})")
for _code in range(_MAX_CODES):
    _NEEDS_PRE[_code] = _code in NEEDS_PREACTIVATION


cdef bint _needs_preactivation(int act) noexcept nogil:
    return 0 <= act < _MAX_CODES and _NEEDS_PRE[act]

# 1 / sqrt(2) and 1 / sqrt(2 pi), for the exact GELU.
cdef double _SQRT1_2 = 0.70710678118654752440
cdef double _INV_SQRT_2PI = 0.39894228040143267794
# Batch normalization (Ioffe & Szegedy, 2015), PyTorch's defaults: eps added
# to the variance, and the weight of each batch in the running statistics.
cdef double BN_EPS = 1e-5
cdef double BN_MOMENTUM = 0.1
BATCH_NORM_EPS = BN_EPS
BATCH_NORM_MOMENTUM = BN_MOMENTUM
LOSSES = {loss.name: loss.code for loss in _LOSS_ROWS}  # from the table


# The ufunc inner loops scikit-learn's MLP uses (np.tanh, np.exp,
# scipy.special.expit), called without the GIL: the same bits, and fast
# (NumPy's tanh is SIMD: 0.7 ns against 13 ns for libm's scalar tanh).
ctypedef void (*_UfuncLoop)(char**, const cnp.npy_intp*, const cnp.npy_intp*,
                            void*) noexcept nogil

cdef struct _Loop:
    _UfuncLoop fn
    void* data


cdef _Loop _ufunc_loop(cnp.ufunc uf, char code) except *:
    """The loop np.<uf> runs for a 1-D array of the given type code."""
    cdef int i
    for i in range(uf.ntypes):
        # The first matching loop is the one NumPy's type resolution picks.
        if uf.types[2 * i] == code and uf.types[2 * i + 1] == code:
            # Elementwise float loops never touch Python objects, so the cast
            # to a nogil function (Cython warns about it) is sound.
            return _Loop(<_UfuncLoop> uf.functions[i], uf.data[i])
    raise ImportError(f"numpy.{uf.__name__} has no {chr(code)}->{chr(code)} loop")


cdef _Loop _TANH_F = _ufunc_loop(np.tanh, cnp.NPY_FLOAT)
cdef _Loop _TANH_D = _ufunc_loop(np.tanh, cnp.NPY_DOUBLE)
cdef _Loop _EXP_F = _ufunc_loop(np.exp, cnp.NPY_FLOAT)
cdef _Loop _EXP_D = _ufunc_loop(np.exp, cnp.NPY_DOUBLE)
# With SCIPY_ARRAY_API=1, scipy.special.expit is a dispatching wrapper of
# the ufunc (functools.wraps): unwrap it, whatever the switch says.
_EXPIT = inspect.unwrap(scipy.special.expit)
cdef _Loop _EXPIT_F = _ufunc_loop(_EXPIT, cnp.NPY_FLOAT)
cdef _Loop _EXPIT_D = _ufunc_loop(_EXPIT, cnp.NPY_DOUBLE)


cdef inline void _numpy_loop(floating* z, Py_ssize_t size, _Loop f32,
                             _Loop f64) noexcept nogil:
    """z = f(z) in place, through the NumPy loop for floating."""
    cdef char* args[2]
    cdef cnp.npy_intp dims[1]
    cdef cnp.npy_intp steps[2]
    args[0] = <char*> z
    args[1] = <char*> z
    dims[0] = size
    steps[0] = sizeof(floating)
    steps[1] = sizeof(floating)
    if floating is float:
        f32.fn(args, dims, steps, f32.data)
    else:
        f64.fn(args, dims, steps, f64.data)


cdef inline floating _act_value(floating v, int act) noexcept nogil:
    """act(v) for the element-wise activations added beyond scikit-learn's."""
    if act == LEAKY_RELU:
        return v if v > 0 else <floating> 0.01 * v
    if act == ELU:
        return v if v > 0 else _expm1(v)
    if act == GELU:
        return <floating> 0.5 * v * (1 + _erf(v * <floating> _SQRT1_2))
    if act == SOFTPLUS:
        # max(v, 0) + log1p(exp(-|v|)): no overflow, accurate for v << 0.
        return (v if v > 0 else 0) + _log1p(_exp(-fabs(v)))
    if act == SILU:
        return v * _logistic(v)
    if act == SOFTSIGN:
        return v / (1 + fabs(v))
    return v


cdef inline rule_void _bias_act_rule(floating* Z, const floating* b,
                                     Py_ssize_t n, Py_ssize_t m, int act,
                                     floating* pre) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating* z
    cdef floating v, mx
    if act == SOFTMAX:
        # Rows shifted by their maximum so exp never overflows; then one exp
        # call over the block, as scikit-learn's over the whole array (the
        # same bits: NumPy's exp is elementwise), then each row's sum.
        for i in range(n):
            z = Z + i * m
            for j in range(m):
                z[j] = z[j] + b[j]
            if pre != NULL:
                memcpy(pre + i * m, z, m * sizeof(floating))
            mx = z[0]
            for j in range(1, m):
                if z[j] > mx:
                    mx = z[j]
            for j in range(m):
                z[j] = z[j] - mx
        _numpy_loop(Z, n * m, _EXP_F, _EXP_D)
        for i in range(n):
            z = Z + i * m
            v = 0
            for j in range(m):
                v = v + z[j]
            for j in range(m):
                z[j] = z[j] / v
        return
    if act == TANH or act == EXP or act == LOGISTIC:
        for i in range(n):
            z = Z + i * m
            for j in range(m):
                z[j] = z[j] + b[j]
        if pre != NULL:
            memcpy(pre, Z, n * m * sizeof(floating))
        if act == TANH:
            _numpy_loop(Z, n * m, _TANH_F, _TANH_D)
        elif act == EXP:
            _numpy_loop(Z, n * m, _EXP_F, _EXP_D)
        else:
            _numpy_loop(Z, n * m, _EXPIT_F, _EXPIT_D)
        return
    for i in range(n):
        z = Z + i * m
        if pre != NULL:
            for j in range(m):
                pre[i * m + j] = z[j] + b[j]
        if act == RELU:
            for j in range(m):
                v = z[j] + b[j]
                z[j] = 0 if v < 0 else v  # NaN passes through, as np.maximum
        elif act >= LEAKY_RELU:
            for j in range(m):
                z[j] = _act_value(z[j] + b[j], act)
        else:
            for j in range(m):
                z[j] = z[j] + b[j]


cdef avx2_void _bias_act_avx2(floating* Z, const floating* b, Py_ssize_t n,
                              Py_ssize_t m, int act,
                              floating* pre) noexcept nogil:
    _bias_act_rule(Z, b, n, m, act, pre)


cdef void _bias_act(floating* Z, const floating* b, Py_ssize_t n,
                    Py_ssize_t m, int act, floating* pre) noexcept nogil:
    """Z[i, :] = act(Z[i, :] + b) in place; softmax is row-wise.

    When pre is not NULL, the pre-activation Z + b is also written there.
    """
    # AVX2 where the CPU has it (fastbp._simd).
    if use_avx2():
        _bias_act_avx2(Z, b, n, m, act, pre)
    else:
        _bias_act_rule(Z, b, n, m, act, pre)


cdef inline rule_void _act_grad_rule(const floating* A, const floating* Z,
                                     floating* delta, Py_ssize_t n,
                                     Py_ssize_t m, int act) noexcept nogil:
    cdef Py_ssize_t i, size = n * m
    cdef floating s, a
    # Selects rather than conditional stores: the loops then vectorize and
    # never mispredict (relu's zeros fall at random).
    if act == RELU:
        for i in range(size):
            delta[i] = 0 if A[i] == 0 else delta[i]
    elif act == TANH:
        for i in range(size):
            delta[i] = delta[i] * (1 - A[i] * A[i])
    elif act == LOGISTIC:
        for i in range(size):
            delta[i] = delta[i] * A[i] * (1 - A[i])
    elif act == LEAKY_RELU:
        for i in range(size):
            delta[i] = delta[i] if A[i] > 0 else delta[i] * <floating> 0.01
    elif act == ELU:
        # For z <= 0: d/dz (exp(z) - 1) = exp(z) = A + 1.
        for i in range(size):
            delta[i] = delta[i] if A[i] > 0 else delta[i] * (A[i] + 1)
    elif act == SOFTPLUS:
        # logistic(z) = 1 - exp(-A), through expm1 for small A.
        for i in range(size):
            delta[i] = delta[i] * -_expm1(-A[i])
    elif act == SOFTSIGN:
        # 1 / (1 + |z|)^2 = (1 - |A|)^2.
        for i in range(size):
            a = 1 - fabs(A[i])
            delta[i] = delta[i] * a * a
    elif act == GELU:
        # Phi(z) + z phi(z).
        for i in range(size):
            delta[i] = delta[i] * (
                <floating> 0.5 * (1 + _erf(Z[i] * <floating> _SQRT1_2))
                + Z[i] * <floating> _INV_SQRT_2PI
                * _exp(<floating> -0.5 * Z[i] * Z[i]))
    elif act == SILU:
        # s + z s (1 - s), s = logistic(z).
        for i in range(size):
            s = _logistic(Z[i])
            delta[i] = delta[i] * s * (1 + Z[i] * (1 - s))


cdef avx2_void _act_grad_avx2(const floating* A, const floating* Z,
                              floating* delta, Py_ssize_t n, Py_ssize_t m,
                              int act) noexcept nogil:
    _act_grad_rule(A, Z, delta, n, m, act)


cdef void _act_grad(const floating* A, const floating* Z, floating* delta,
                    Py_ssize_t n, Py_ssize_t m, int act) noexcept nogil:
    """delta *= act'(Z), written through the activation A = act(Z).

    Only GELU and SiLU read the pre-activation Z (NULL for the others).
    """
    # AVX2 where the CPU has it (fastbp._simd).
    if use_avx2():
        _act_grad_avx2(A, Z, delta, n, m, act)
    else:
        _act_grad_rule(A, Z, delta, n, m, act)


cdef double _loss_delta(const floating* P, const floating* Y,
                        const floating* sw, const Py_ssize_t* rows,
                        Py_ssize_t row0, Py_ssize_t n, Py_ssize_t m, int loss,
                        double loss_param, floating* delta,
                        double* sw_sum) noexcept nogil:
    """Return the (weighted mean) data loss of a batch; write its output delta.

    Row r of the batch is sample rows[row0 + r] (row0 + r when rows is NULL)
    of Y and sw. With the canonical link of each loss the output delta is
    (P - Y) * sw. Logs are taken of P clipped to [eps, 1 - eps]. The losses
    beyond scikit-learn's MLP (absolute error, Huber, quantile, gamma) are
    _other_loss_delta's, loss_param their Huber delta or quantile.
    """
    if loss >= ABSOLUTE_ERROR:
        return _other_loss_delta(P, Y, sw, rows, row0, n, m, loss, loss_param,
                                 delta, sw_sum)
    cdef Py_ssize_t r, k, row
    cdef double total = 0, acc, w = 1, wsum = 0, y, p, q
    cdef double eps = 1.1920928955078125e-07 if floating is float \
        else 2.220446049250313e-16
    cdef const floating* y_row
    cdef const floating* p_row
    cdef floating* d_row
    for r in range(n):
        row = rows[row0 + r] if rows != NULL else row0 + r
        if sw != NULL:
            w = sw[row]
        wsum += w
        y_row = Y + row * m
        p_row = P + r * m
        d_row = delta + r * m
        # The delta first, in loops of its own that vectorize; then the
        # loss terms, each loss in its own loop (log only where y needs it).
        for k in range(m):
            d_row[k] = p_row[k] - y_row[k]
        if sw != NULL:
            for k in range(m):
                d_row[k] = d_row[k] * <floating> w
        acc = 0
        if loss == SQUARED_ERROR:
            for k in range(m):
                y = y_row[k]
                p = p_row[k]
                acc += (y - p) * (y - p)
        elif loss == POISSON:
            for k in range(m):
                y = y_row[k]
                p = p_row[k]
                acc += p - y
                if y != 0:
                    acc += y * log(y / p)
        elif loss == LOG_LOSS:
            for k in range(m):
                y = y_row[k]
                if y != 0:
                    p = p_row[k]
                    q = eps if p < eps else (1 - eps if p > 1 - eps else p)
                    acc += y * log(q)
        else:
            for k in range(m):
                y = y_row[k]
                p = p_row[k]
                q = eps if p < eps else (1 - eps if p > 1 - eps else p)
                if y != 0:
                    acc += y * log(q)
                if y != 1:
                    acc += (1 - y) * log(1 - q)
        total += w * acc
    sw_sum[0] = wsum
    total /= wsum
    if loss == SQUARED_ERROR:
        return 0.5 * total / m
    if loss == POISSON:
        return total
    return -total


cdef double _other_loss_delta(const floating* P, const floating* Y,
                              const floating* sw, const Py_ssize_t* rows,
                              Py_ssize_t row0, Py_ssize_t n, Py_ssize_t m,
                              int loss, double loss_param, floating* delta,
                              double* sw_sum) noexcept nogil:
    """_loss_delta of the losses beyond scikit-learn's MLP, summed over
    outputs; the output delta is d loss / d z (z the output layer's
    pre-activation) times sw. Formulas and tie rules are scikit-learn's
    (sklearn._loss), e = p - y:

    absolute_error  |e|;                        delta 1 if e > 0 else -1
    huber           e^2 / 2 if |e| <= d,        delta e if |e| <= d,
                    else d (|e| - d / 2)        else d sign(e)
    quantile (q)    q (y - p) if y >= p,        delta -q if y >= p
                    else (1 - q) (p - y)        else 1 - q
    gamma (p = exp z)  y / p - log(y / p) - 1   delta 1 - y / p
    """
    cdef Py_ssize_t r, k, row
    cdef double total = 0, acc, w = 1, wsum = 0, y, p, e, g, t
    cdef double d = loss_param, q = loss_param
    cdef const floating* y_row
    cdef const floating* p_row
    cdef floating* d_row
    for r in range(n):
        row = rows[row0 + r] if rows != NULL else row0 + r
        if sw != NULL:
            w = sw[row]
        wsum += w
        y_row = Y + row * m
        p_row = P + r * m
        d_row = delta + r * m
        acc = 0
        # One loop per loss, selects rather than branches where they can.
        if loss == ABSOLUTE_ERROR:
            for k in range(m):
                e = p_row[k] - y_row[k]
                acc += fabs(e)
                d_row[k] = <floating> (1.0 if e > 0 else -1.0)
        elif loss == HUBER:
            for k in range(m):
                e = p_row[k] - y_row[k]
                t = fabs(e)
                acc += 0.5 * e * e if t <= d else d * (t - 0.5 * d)
                g = d if e >= 0 else -d
                d_row[k] = <floating> (e if t <= d else g)
        elif loss == QUANTILE:
            for k in range(m):
                y = y_row[k]
                p = p_row[k]
                acc += q * (y - p) if y >= p else (1 - q) * (p - y)
                d_row[k] = <floating> (-q if y >= p else 1 - q)
        else:  # GAMMA
            for k in range(m):
                t = y_row[k] / <double> p_row[k]
                acc += t - log(t) - 1
                d_row[k] = <floating> (1 - t)
        if sw != NULL:
            for k in range(m):
                d_row[k] = d_row[k] * <floating> w
        total += w * acc
    sw_sum[0] = wsum
    return total / wsum


cdef inline rule_void _bias_grad_rule(const floating* delta, Py_ssize_t n,
                                      Py_ssize_t m, floating sw_sum,
                                      floating* out) noexcept nogil:
    cdef Py_ssize_t i, j
    for j in range(m):
        out[j] = 0
    for i in range(n):
        for j in range(m):
            out[j] = out[j] + delta[i * m + j]
    _divide(out, m, sw_sum)


cdef avx2_void _bias_grad_avx2(const floating* delta, Py_ssize_t n,
                               Py_ssize_t m, floating sw_sum,
                               floating* out) noexcept nogil:
    _bias_grad_rule(delta, n, m, sw_sum, out)


cdef void _bias_grad(const floating* delta, Py_ssize_t n, Py_ssize_t m,
                     floating sw_sum, floating* out) noexcept nogil:
    """out = delta.sum(axis=0) / sw_sum, summing rows in order as NumPy does."""
    # AVX2 where the CPU has it (fastbp._simd).
    if use_avx2():
        _bias_grad_avx2(delta, n, m, sw_sum, out)
    else:
        _bias_grad_rule(delta, n, m, sw_sum, out)


cdef inline floating _exact_inverse(floating d) noexcept nogil:
    """1 / d where that is exact (d a power of two, 1 / d representable),
    else 0. Then x * (1 / d) and x / d are the same correctly rounded number,
    and the multiply is several times cheaper than the divide."""
    cdef int e
    cdef floating inv
    if not isfinite(d) or d == 0 or frexp(d, &e) != 0.5:
        return 0
    inv = 1 / d
    if not isfinite(inv) or inv == 0 or frexp(inv, &e) != 0.5:
        return 0
    return inv


cdef inline rule_void _divide(floating* x, Py_ssize_t n,
                              floating d) noexcept nogil:
    """x = x / d, by the exact inverse where there is one."""
    cdef Py_ssize_t i
    cdef floating inv = _exact_inverse(d)
    if inv != 0:
        for i in range(n):
            x[i] = x[i] * inv
    else:
        for i in range(n):
            x[i] = x[i] / d


cdef inline rule_void _l2_rule(floating* grad_W, const floating* W,
                               Py_ssize_t size, floating alpha,
                               floating sw_sum) noexcept nogil:
    # By the exact inverse where there is one (_exact_inverse): batches of
    # 2^k equally weighted rows, the usual sizes, lose the divide.
    cdef Py_ssize_t i
    cdef floating inv = _exact_inverse(sw_sum)
    if inv != 0:
        for i in range(size):
            grad_W[i] = (grad_W[i] + alpha * W[i]) * inv
    else:
        for i in range(size):
            grad_W[i] = (grad_W[i] + alpha * W[i]) / sw_sum


cdef avx2_void _l2_avx2(floating* grad_W, const floating* W, Py_ssize_t size,
                        floating alpha, floating sw_sum) noexcept nogil:
    _l2_rule(grad_W, W, size, alpha, sw_sum)


cdef void _l2_grad(floating* grad_W, const floating* W, Py_ssize_t size,
                   floating alpha, floating sw_sum) noexcept nogil:
    """grad_W = (grad_W + alpha * W) / sw_sum (AVX2 where the CPU has it:
    fastbp._simd; the divide, where it is not a power of two's, is the
    cost)."""
    if use_avx2():
        _l2_avx2(grad_W, W, size, alpha, sw_sum)
    else:
        _l2_rule(grad_W, W, size, alpha, sw_sum)


cdef double _sq_norm(const floating* W, Py_ssize_t size) noexcept nogil:
    # Eight running sums: a single one is a chain of dependent adds that the
    # compiler may not reorder (no -ffast-math), several times slower.
    cdef Py_ssize_t i, k, end = size - size % 8
    cdef double acc[8]
    cdef double w
    for k in range(8):
        acc[k] = 0
    for i in range(0, end, 8):
        for k in range(8):
            w = W[i + k]
            acc[k] += w * w
    for i in range(end, size):
        w = W[i]
        acc[0] += w * w
    return (((acc[0] + acc[1]) + (acc[2] + acc[3]))
            + ((acc[4] + acc[5]) + (acc[6] + acc[7])))


cdef void _l1_grad(floating* grad_W, const floating* W, Py_ssize_t size,
                   floating l1, floating sw_sum) noexcept nogil:
    """grad_W += l1 * sign(W) / sw_sum: the L1 subgradient, 0 where W == 0."""
    cdef Py_ssize_t i
    cdef floating step = l1 / sw_sum
    for i in range(size):
        # Branch-free sign, so the loop vectorizes.
        grad_W[i] = grad_W[i] + step * ((W[i] > 0) - (W[i] < 0))


cdef double _abs_sum(const floating* W, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0
    for i in range(size):
        s += fabs(W[i])
    return s


cdef inline double _uniform(unsigned long long seed,
                            unsigned long long counter) noexcept nogil:
    """A uniform [0, 1) number from (seed, counter): the SplitMix64 mix
    (Steele, Lea & Flood, 2014) of seed + (counter + 1) * golden ratio, top 53
    bits. Counter-based, so any batch's mask is reproducible on its own."""
    cdef unsigned long long z = seed + (counter + 1) * 0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    z = z ^ (z >> 31)
    return <double> (z >> 11) * 1.1102230246251565e-16  # 2**-53


cdef void _dropout_forward(floating* A, floating* mask, Py_ssize_t n,
                           Py_ssize_t m, double rate, unsigned long long seed,
                           Py_ssize_t row0, Py_ssize_t col0,
                           Py_ssize_t width) noexcept nogil:
    """Inverted dropout in place: A *= mask, mask 1 / (1 - rate) or 0.

    Unit j of batch row r is dropped when the uniform number of counter
    (row0 + r) * width + col0 + j is below rate.
    """
    cdef Py_ssize_t r, j
    cdef floating scale = <floating> (1.0 / (1.0 - rate))
    cdef unsigned long long base
    for r in range(n):
        base = <unsigned long long> ((row0 + r) * width + col0)
        for j in range(m):
            if _uniform(seed, base + j) < rate:
                mask[r * m + j] = 0
            else:
                mask[r * m + j] = scale
            A[r * m + j] = A[r * m + j] * mask[r * m + j]


cdef void _dropout_backward(floating* A, const floating* mask, floating* delta,
                            Py_ssize_t size, double rate) noexcept nogil:
    """delta *= mask; A *= 1 - rate, undoing the forward scaling for act'.

    Where a unit was dropped delta becomes 0, so A's value there is moot.
    """
    cdef Py_ssize_t i
    cdef floating keep = <floating> (1.0 - rate)
    for i in range(size):
        delta[i] = delta[i] * mask[i]
        A[i] = A[i] * keep


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTBP_PREFETCH(p) __builtin_prefetch((p), 0, 3)
    #elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    #include <xmmintrin.h>
    #define FASTBP_PREFETCH(p) _mm_prefetch((const char*)(p), _MM_HINT_T0)
    #else
    #define FASTBP_PREFETCH(p) ((void)(p))
    #endif
    """
    void _prefetch "FASTBP_PREFETCH"(const void* p) noexcept nogil

# Rows ahead that _gather_rows asks the memory for: shuffled rows are
# scattered over X, and the copy otherwise waits on each row in turn.
cdef enum:
    GATHER_AHEAD = 8


cdef inline void _prefetch_row(const floating* x, Py_ssize_t n) noexcept nogil:
    """Ask for the cache lines of x[:n] (64 bytes each)."""
    cdef Py_ssize_t j = 0
    while j < n:
        _prefetch(x + j)
        j += 64 // sizeof(floating)
    _prefetch(x + n - 1)


cdef void _gather_rows(const floating* X, Py_ssize_t n_features,
                       const Py_ssize_t* rows, Py_ssize_t row0, Py_ssize_t n,
                       floating* out) noexcept nogil:
    """out[r, :] = X[rows[row0 + r], :]."""
    cdef Py_ssize_t r, j
    cdef const floating* x
    for r in range(min(n, GATHER_AHEAD)):
        _prefetch_row(X + rows[row0 + r] * n_features, n_features)
    for r in range(n):
        if r + GATHER_AHEAD < n:
            _prefetch_row(X + rows[row0 + r + GATHER_AHEAD] * n_features,
                          n_features)
        x = X + rows[row0 + r] * n_features
        for j in range(n_features):
            out[r * n_features + j] = x[j]


cdef void _csr_forward(const floating* data, const Py_ssize_t* indices,
                       const Py_ssize_t* indptr, const Py_ssize_t* rows,
                       Py_ssize_t row0, Py_ssize_t n, const floating* W,
                       Py_ssize_t fan_out, floating* out) noexcept nogil:
    """out = X[rows] @ W for CSR X, touching only the stored entries."""
    cdef Py_ssize_t r, p, j, row
    cdef floating v
    cdef floating* o
    cdef const floating* w
    memset(out, 0, n * fan_out * sizeof(floating))
    for r in range(n):
        row = rows[row0 + r] if rows != NULL else row0 + r
        o = out + r * fan_out
        for p in range(indptr[row], indptr[row + 1]):
            v = data[p]
            w = W + indices[p] * fan_out
            for j in range(fan_out):
                o[j] = o[j] + v * w[j]


cdef void _csr_grad(const floating* data, const Py_ssize_t* indices,
                    const Py_ssize_t* indptr, const Py_ssize_t* rows,
                    Py_ssize_t row0, Py_ssize_t n, const floating* delta,
                    Py_ssize_t fan_in, Py_ssize_t fan_out,
                    floating* out) noexcept nogil:
    """out = X[rows].T @ delta for CSR X."""
    cdef Py_ssize_t r, p, j, row
    cdef floating v
    cdef floating* o
    cdef const floating* d
    memset(out, 0, fan_in * fan_out * sizeof(floating))
    for r in range(n):
        row = rows[row0 + r] if rows != NULL else row0 + r
        d = delta + r * fan_out
        for p in range(indptr[row], indptr[row + 1]):
            v = data[p]
            o = out + indices[p] * fan_out
            for j in range(fan_out):
                o[j] = o[j] + v * d[j]


# ---------------------------------------------------------------------------
# Python wrappers: check shapes, then one nogil call. Used by the tests.

cdef inline void _same(Py_ssize_t a, Py_ssize_t b, str what) except *:
    if a != b:
        raise ValueError(f"{what}: {a} != {b}")


cdef void _check_loss(int loss, double loss_param) except *:
    """A known loss code, with a Huber delta > 0 or a quantile in (0, 1)."""
    if loss not in LOSSES.values():
        raise ValueError(f"unknown loss code {loss}")
    if loss == HUBER and not loss_param > 0:
        raise ValueError(f"the Huber delta must be > 0, got {loss_param}")
    if loss == QUANTILE and not 0 < loss_param < 1:
        raise ValueError(f"the quantile must be in (0, 1), got {loss_param}")


cdef const Py_ssize_t* _rows_ptr(const Py_ssize_t[::1] rows, Py_ssize_t n_rows):
    """Pointer to rows after checking each index is in [0, n_rows)."""
    cdef Py_ssize_t i
    if rows is None:
        return NULL
    for i in range(rows.shape[0]):
        if rows[i] < 0 or rows[i] >= n_rows:
            raise ValueError(f"row index {rows[i]} out of range")
    return &rows[0] if rows.shape[0] else NULL


cdef void _bn_forward(floating* Z, const floating* b, const floating* gamma,
                      Py_ssize_t n, Py_ssize_t m, floating* zhat,
                      floating* stats, floating* running,
                      bint batch) noexcept nogil:
    """Z = gamma * zhat, zhat = (Z + b - mean) / sqrt(var + eps), in place.

    stats (3 m) receives mean, var and 1 / sqrt(var + eps). With batch, they
    are the rows' mean and biased variance, and when running (mean then
    variance, 2 m) is not NULL it moves towards them by BATCH_NORM_MOMENTUM,
    with the unbiased variance n / (n - 1) var (left as is for n = 1).
    Without batch, mean and var are read from running.
    """
    cdef Py_ssize_t i, j
    cdef floating* mean = stats
    cdef floating* var = stats + m
    cdef floating* inv = stats + 2 * m
    cdef floating d, mom = <floating> BN_MOMENTUM
    for i in range(n):
        for j in range(m):
            Z[i * m + j] = Z[i * m + j] + b[j]
    if batch:
        for j in range(m):
            mean[j] = 0
            var[j] = 0
        for i in range(n):
            for j in range(m):
                mean[j] = mean[j] + Z[i * m + j]
        for j in range(m):
            mean[j] = mean[j] / n
        for i in range(n):
            for j in range(m):
                d = Z[i * m + j] - mean[j]
                var[j] = var[j] + d * d
        for j in range(m):
            var[j] = var[j] / n
        if running != NULL:
            for j in range(m):
                running[j] = (1 - mom) * running[j] + mom * mean[j]
            if n > 1:
                for j in range(m):
                    running[m + j] = ((1 - mom) * running[m + j]
                                      + mom * var[j] * n / (n - 1))
    else:
        for j in range(m):
            mean[j] = running[j]
            var[j] = running[m + j]
    for j in range(m):
        inv[j] = 1 / sqrt(var[j] + <floating> BN_EPS)
    for i in range(n):
        for j in range(m):
            d = (Z[i * m + j] - mean[j]) * inv[j]
            zhat[i * m + j] = d
            Z[i * m + j] = gamma[j] * d


cdef void _bn_backward(floating* delta, const floating* zhat,
                       const floating* stats, const floating* gamma,
                       Py_ssize_t n, Py_ssize_t m, floating sw_sum,
                       floating* grad_gamma, floating* grad_beta) noexcept nogil:
    """Through batch normalization with batch statistics, in place.

    delta holds dL/dY for Y = gamma zhat + beta (times sw_sum, as every delta);
    it becomes dL/dZ = gamma / sqrt(var + eps) (dY - mean(dY) - zhat
    mean(dY zhat)), means over the rows. grad_gamma = sum(dY zhat) / sw_sum,
    grad_beta = sum(dY) / sw_sum.
    """
    cdef Py_ssize_t i, j
    cdef const floating* inv = stats + 2 * m
    for j in range(m):
        grad_gamma[j] = 0
        grad_beta[j] = 0
    for i in range(n):
        for j in range(m):
            grad_beta[j] = grad_beta[j] + delta[i * m + j]
            grad_gamma[j] = grad_gamma[j] + delta[i * m + j] * zhat[i * m + j]
    for i in range(n):
        for j in range(m):
            delta[i * m + j] = gamma[j] * inv[j] * (
                delta[i * m + j] - grad_beta[j] / n
                - zhat[i * m + j] * grad_gamma[j] / n)
    for j in range(m):
        grad_gamma[j] = grad_gamma[j] / sw_sum
        grad_beta[j] = grad_beta[j] / sw_sum


def bias_act(floating[:, ::1] Z, const floating[::1] b, int act,
             floating[:, ::1] pre=None):
    """Z = act(Z + b) in place; pre = Z + b when given. Twin: _reference.bias_act."""
    cdef floating* pre_p = NULL
    _same(Z.shape[1], b.shape[0], "Z columns vs b")
    if pre is not None:
        _same(pre.shape[0], Z.shape[0], "pre rows vs Z rows")
        _same(pre.shape[1], Z.shape[1], "pre columns vs Z columns")
    if Z.shape[0] and Z.shape[1]:
        if pre is not None:
            pre_p = &pre[0, 0]
        with nogil:
            _bias_act(&Z[0, 0], &b[0], Z.shape[0], Z.shape[1], act, pre_p)


def act_grad(const floating[:, ::1] A, floating[:, ::1] delta, int act,
             const floating[:, ::1] Z=None):
    """delta *= act'(Z) from A = act(Z), in place. Twin: _reference.act_grad.

    Z, the pre-activation, is required by the activations in
    NEEDS_PREACTIVATION and ignored by the others.
    """
    cdef const floating* Z_p = NULL
    _same(A.shape[0], delta.shape[0], "A rows vs delta rows")
    _same(A.shape[1], delta.shape[1], "A columns vs delta columns")
    if act in NEEDS_PREACTIVATION:
        if Z is None:
            raise ValueError("this activation's derivative needs Z")
        _same(Z.shape[0], A.shape[0], "Z rows vs A rows")
        _same(Z.shape[1], A.shape[1], "Z columns vs A columns")
    if A.shape[0] and A.shape[1]:
        if act in NEEDS_PREACTIVATION:
            Z_p = &Z[0, 0]
        with nogil:
            _act_grad(&A[0, 0], Z_p, &delta[0, 0], A.shape[0], A.shape[1], act)


def loss_delta(const floating[:, ::1] P, const floating[:, ::1] Y,
               const floating[::1] sw, const Py_ssize_t[::1] rows, int loss,
               floating[:, ::1] delta, double loss_param=0.0):
    """Return (loss, sw_sum) of batch P against Y[rows]; write delta.

    loss_param is the Huber delta or the quantile of those losses.
    Twin: _reference.loss_delta.
    """
    _check_loss(loss, loss_param)
    cdef Py_ssize_t n = P.shape[0], m = P.shape[1]
    cdef double out, sw_sum = 0
    cdef const Py_ssize_t* rows_p = _rows_ptr(rows, Y.shape[0])
    cdef const floating* sw_p = NULL
    _same(Y.shape[1], m, "Y columns vs P columns")
    _same(delta.shape[0], n, "delta rows vs P rows")
    _same(delta.shape[1], m, "delta columns vs P columns")
    _same(rows.shape[0] if rows is not None else Y.shape[0], n,
          "batch rows vs P rows")
    if sw is not None:
        _same(sw.shape[0], Y.shape[0], "sample_weight vs Y rows")
        sw_p = &sw[0]
    if n == 0 or m == 0:
        raise ValueError("empty batch")
    with nogil:
        out = _loss_delta(&P[0, 0], &Y[0, 0], sw_p, rows_p, 0, n, m, loss,
                          loss_param, &delta[0, 0], &sw_sum)
    return out, sw_sum


def bias_grad(const floating[:, ::1] delta, floating sw_sum, floating[::1] out):
    """out = delta.sum(axis=0) / sw_sum. Twin: _reference.bias_grad."""
    _same(delta.shape[1], out.shape[0], "delta columns vs out")
    if delta.shape[1]:
        with nogil:
            _bias_grad(&delta[0, 0] if delta.shape[0] else NULL, delta.shape[0],
                       delta.shape[1], sw_sum, &out[0])


def l2_grad(floating[::1] grad_W, const floating[::1] W, floating alpha,
            floating sw_sum):
    """grad_W = (grad_W + alpha * W) / sw_sum. Twin: _reference.l2_grad."""
    _same(grad_W.shape[0], W.shape[0], "grad_W vs W")
    if W.shape[0]:
        with nogil:
            _l2_grad(&grad_W[0], &W[0], W.shape[0], alpha, sw_sum)


def sq_norm(const floating[::1] W):
    """Return sum(W ** 2) accumulated in double. Twin: _reference.sq_norm."""
    cdef double out = 0
    if W.shape[0]:
        with nogil:
            out = _sq_norm(&W[0], W.shape[0])
    return out


def l1_grad(floating[::1] grad_W, const floating[::1] W, floating l1,
            floating sw_sum):
    """grad_W += l1 * sign(W) / sw_sum. Twin: _reference.l1_grad."""
    _same(grad_W.shape[0], W.shape[0], "grad_W vs W")
    if W.shape[0]:
        with nogil:
            _l1_grad(&grad_W[0], &W[0], W.shape[0], l1, sw_sum)


def abs_sum(const floating[::1] W):
    """Return sum(|W|) accumulated in double. Twin: _reference.abs_sum."""
    cdef double out = 0
    if W.shape[0]:
        with nogil:
            out = _abs_sum(&W[0], W.shape[0])
    return out


def dropout_forward(floating[:, ::1] A, floating[:, ::1] mask, double rate,
                    unsigned long long seed, Py_ssize_t row0, Py_ssize_t col0,
                    Py_ssize_t width):
    """Inverted dropout of A in place, mask written. Twin: _reference.dropout_forward."""
    _same(mask.shape[0], A.shape[0], "mask rows vs A rows")
    _same(mask.shape[1], A.shape[1], "mask columns vs A columns")
    if not 0 <= rate < 1:
        raise ValueError("dropout rate must be in [0, 1)")
    if row0 < 0 or col0 < 0 or col0 + A.shape[1] > width:
        raise ValueError("dropout counters out of range")
    if A.shape[0] and A.shape[1]:
        with nogil:
            _dropout_forward(&A[0, 0], &mask[0, 0], A.shape[0], A.shape[1],
                             rate, seed, row0, col0, width)


def dropout_backward(floating[:, ::1] A, const floating[:, ::1] mask,
                     floating[:, ::1] delta, double rate):
    """delta *= mask, A *= 1 - rate. Twin: _reference.dropout_backward."""
    _same(mask.shape[0], A.shape[0], "mask rows vs A rows")
    _same(mask.shape[1], A.shape[1], "mask columns vs A columns")
    _same(delta.shape[0], A.shape[0], "delta rows vs A rows")
    _same(delta.shape[1], A.shape[1], "delta columns vs A columns")
    if A.shape[0] and A.shape[1]:
        with nogil:
            _dropout_backward(&A[0, 0], &mask[0, 0], &delta[0, 0],
                              A.shape[0] * A.shape[1], rate)


def gather_rows(const floating[:, ::1] X, const Py_ssize_t[::1] rows,
                floating[:, ::1] out):
    """out = X[rows]. Twin: _reference.gather_rows."""
    cdef const Py_ssize_t* rows_p = _rows_ptr(rows, X.shape[0])
    _same(out.shape[0], rows.shape[0], "out rows vs rows")
    _same(out.shape[1], X.shape[1], "out columns vs X columns")
    if rows.shape[0] and X.shape[1]:
        with nogil:
            _gather_rows(&X[0, 0], X.shape[1], rows_p, 0, rows.shape[0],
                         &out[0, 0])


cdef void _check_csr(const floating[::1] data, const Py_ssize_t[::1] indices,
                     const Py_ssize_t[::1] indptr, Py_ssize_t n_cols) except *:
    cdef Py_ssize_t i
    _same(data.shape[0], indices.shape[0], "CSR data vs indices")
    if indptr.shape[0] == 0 or indptr[0] != 0 \
            or indptr[indptr.shape[0] - 1] != data.shape[0]:
        raise ValueError("CSR indptr must run from 0 to nnz")
    for i in range(indptr.shape[0] - 1):
        if indptr[i + 1] < indptr[i]:
            raise ValueError("CSR indptr must not decrease")
    for i in range(indices.shape[0]):
        if indices[i] < 0 or indices[i] >= n_cols:
            raise ValueError("CSR column index out of range")


def csr_forward(const floating[::1] data, const Py_ssize_t[::1] indices,
                const Py_ssize_t[::1] indptr, const Py_ssize_t[::1] rows,
                const floating[:, ::1] W, floating[:, ::1] out):
    """out = X[rows] @ W for CSR X. Twin: _reference.csr_forward."""
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1
    cdef Py_ssize_t n = rows.shape[0] if rows is not None else n_rows
    _check_csr(data, indices, indptr, W.shape[0])
    cdef const Py_ssize_t* rows_p = _rows_ptr(rows, n_rows)
    _same(out.shape[0], n, "out rows vs batch rows")
    _same(out.shape[1], W.shape[1], "out columns vs W columns")
    if n and W.shape[1]:
        with nogil:
            _csr_forward(&data[0] if data.shape[0] else NULL,
                         &indices[0] if data.shape[0] else NULL, &indptr[0],
                         rows_p, 0, n, &W[0, 0], W.shape[1], &out[0, 0])


def csr_grad(const floating[::1] data, const Py_ssize_t[::1] indices,
             const Py_ssize_t[::1] indptr, const Py_ssize_t[::1] rows,
             const floating[:, ::1] delta, floating[:, ::1] out):
    """out = X[rows].T @ delta for CSR X. Twin: _reference.csr_grad."""
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1
    cdef Py_ssize_t n = rows.shape[0] if rows is not None else n_rows
    _check_csr(data, indices, indptr, out.shape[0])
    cdef const Py_ssize_t* rows_p = _rows_ptr(rows, n_rows)
    _same(delta.shape[0], n, "delta rows vs batch rows")
    _same(out.shape[1], delta.shape[1], "out columns vs delta columns")
    if out.shape[0] and out.shape[1]:
        with nogil:
            _csr_grad(&data[0] if data.shape[0] else NULL,
                      &indices[0] if data.shape[0] else NULL, &indptr[0],
                      rows_p, 0, n, &delta[0, 0] if n else NULL, out.shape[0],
                      out.shape[1], &out[0, 0])


def bn_forward(floating[:, ::1] Z, const floating[::1] b,
               const floating[::1] gamma, floating[:, ::1] zhat,
               floating[::1] stats, floating[::1] running, bint batch):
    """Batch-normalize and scale Z + b in place. Twin: _reference.bn_forward.

    running may be None with batch (no running statistics to update).
    """
    cdef Py_ssize_t n = Z.shape[0], m = Z.shape[1]
    _same(b.shape[0], m, "b vs Z columns")
    _same(gamma.shape[0], m, "gamma vs Z columns")
    _same(zhat.shape[0], n, "zhat rows vs Z rows")
    _same(zhat.shape[1], m, "zhat columns vs Z columns")
    _same(stats.shape[0], 3 * m, "stats vs 3 Z columns")
    if running is not None:
        _same(running.shape[0], 2 * m, "running vs 2 Z columns")
    elif not batch:
        raise ValueError("normalizing without batch needs running statistics")
    if batch and n == 0:
        raise ValueError("batch statistics need at least one row")
    if m:
        with nogil:
            _bn_forward(&Z[0, 0] if n else NULL, &b[0], &gamma[0], n, m,
                        &zhat[0, 0] if n else NULL, &stats[0],
                        &running[0] if running is not None else NULL, batch)


def bn_backward(floating[:, ::1] delta, const floating[:, ::1] zhat,
                const floating[::1] stats, const floating[::1] gamma,
                floating sw_sum, floating[::1] grad_gamma,
                floating[::1] grad_beta):
    """Backward through batch norm, in place. Twin: _reference.bn_backward."""
    cdef Py_ssize_t n = delta.shape[0], m = delta.shape[1]
    _same(zhat.shape[0], n, "zhat rows vs delta rows")
    _same(zhat.shape[1], m, "zhat columns vs delta columns")
    _same(stats.shape[0], 3 * m, "stats vs 3 delta columns")
    _same(gamma.shape[0], m, "gamma vs delta columns")
    _same(grad_gamma.shape[0], m, "grad_gamma vs delta columns")
    _same(grad_beta.shape[0], m, "grad_beta vs delta columns")
    if n == 0:
        raise ValueError("batch statistics need at least one row")
    if m:
        with nogil:
            _bn_backward(&delta[0, 0], &zhat[0, 0], &stats[0], &gamma[0], n, m,
                         sw_sum, &grad_gamma[0], &grad_beta[0])
