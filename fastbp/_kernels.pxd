# Kernel cores shared by _epoch.pyx: pointer-based, noexcept nogil.
# Callers validate every size before calling (see _epoch._check_layout).
from cython cimport floating
from libc.math cimport (
    erf, erff, exp, expf, expm1, expm1f, fabs, log, log1p, log1pf, logf,
)

# Activation codes: the code of each fastbp._families.ACTIVATIONS row, which
# holds every other fact about the activation.
cdef enum:
    IDENTITY = 0
    LOGISTIC = 1
    TANH = 2
    RELU = 3
    SOFTMAX = 4
    EXP = 5
    LEAKY_RELU = 6    # slope 0.01 below 0, as PyTorch's default
    ELU = 7           # alpha = 1
    GELU = 8          # exact: z * Phi(z), Phi the standard normal CDF
    SOFTPLUS = 9
    SILU = 10         # swish: z * logistic(z)
    SOFTSIGN = 11

# Loss codes.
cdef enum:
    SQUARED_ERROR = 0
    LOG_LOSS = 1          # softmax output, categorical cross-entropy
    BINARY_LOG_LOSS = 2   # logistic outputs, per-output cross-entropy
    POISSON = 3           # exp output, half Poisson deviance
    ABSOLUTE_ERROR = 4    # identity output, |y - p|
    HUBER = 5             # identity output, Huber with delta = loss_param
    QUANTILE = 6          # identity output, pinball with quantile = loss_param
    GAMMA = 7             # exp output, half gamma deviance


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _logistic(floating x) noexcept nogil:
    # Branch on the sign so exp never overflows.
    cdef floating e
    if x >= 0:
        return 1 / (1 + _exp(-x))
    e = _exp(x)
    return e / (1 + e)


cdef inline floating _expm1(floating x) noexcept nogil:
    if floating is float:
        return expm1f(x)
    else:
        return expm1(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _erf(floating x) noexcept nogil:
    if floating is float:
        return erff(x)
    else:
        return erf(x)


cdef bint _needs_preactivation(int act) noexcept nogil


cdef void _bias_act(floating* Z, const floating* b, Py_ssize_t n,
                    Py_ssize_t m, int act, floating* pre) noexcept nogil
cdef void _act_grad(const floating* A, const floating* Z, floating* delta,
                    Py_ssize_t n, Py_ssize_t m, int act) noexcept nogil
cdef double _loss_delta(const floating* P, const floating* Y,
                        const floating* sw, const Py_ssize_t* rows,
                        Py_ssize_t row0, Py_ssize_t n, Py_ssize_t m, int loss,
                        double loss_param, floating* delta,
                        double* sw_sum) noexcept nogil
cdef void _check_loss(int loss, double loss_param) except *
cdef void _bias_grad(const floating* delta, Py_ssize_t n, Py_ssize_t m,
                     floating sw_sum, floating* out) noexcept nogil
cdef void _l2_grad(floating* grad_W, const floating* W, Py_ssize_t size,
                   floating alpha, floating sw_sum) noexcept nogil
cdef double _sq_norm(const floating* W, Py_ssize_t size) noexcept nogil
cdef void _l1_grad(floating* grad_W, const floating* W, Py_ssize_t size,
                   floating l1, floating sw_sum) noexcept nogil
cdef double _abs_sum(const floating* W, Py_ssize_t size) noexcept nogil
cdef void _dropout_forward(floating* A, floating* mask, Py_ssize_t n,
                           Py_ssize_t m, double rate, unsigned long long seed,
                           Py_ssize_t row0, Py_ssize_t col0,
                           Py_ssize_t width) noexcept nogil
cdef void _dropout_backward(floating* A, const floating* mask, floating* delta,
                            Py_ssize_t size, double rate) noexcept nogil
cdef void _gather_rows(const floating* X, Py_ssize_t n_features,
                       const Py_ssize_t* rows, Py_ssize_t row0, Py_ssize_t n,
                       floating* out) noexcept nogil
cdef void _csr_forward(const floating* data, const Py_ssize_t* indices,
                       const Py_ssize_t* indptr, const Py_ssize_t* rows,
                       Py_ssize_t row0, Py_ssize_t n, const floating* W,
                       Py_ssize_t fan_out, floating* out) noexcept nogil
cdef void _csr_grad(const floating* data, const Py_ssize_t* indices,
                    const Py_ssize_t* indptr, const Py_ssize_t* rows,
                    Py_ssize_t row0, Py_ssize_t n, const floating* delta,
                    Py_ssize_t fan_in, Py_ssize_t fan_out,
                    floating* out) noexcept nogil
cdef void _bn_forward(floating* Z, const floating* b, const floating* gamma,
                      Py_ssize_t n, Py_ssize_t m, floating* zhat,
                      floating* stats, floating* running,
                      bint batch) noexcept nogil
cdef void _bn_backward(floating* delta, const floating* zhat,
                       const floating* stats, const floating* gamma,
                       Py_ssize_t n, Py_ssize_t m, floating sw_sum,
                       floating* grad_gamma, floating* grad_beta) noexcept nogil
