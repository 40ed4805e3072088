from cython cimport floating
from libc.math cimport pow, sqrt

# Solver codes; fastbp._optimizers.SOLVERS maps names to these.
cdef enum:
    SGD = 0
    ADAM = 1
    ADAGRAD = 2
    RMSPROP = 3
    ADADELTA = 4
    ADAMW = 5
    ADAMAX = 6
    NADAM = 7


# The per-solver facts, written once: run_epoch reads them here, Python
# (the estimators, the NumPy twin) through _optimizers.STATE_ARRAYS and
# COUNTS_STEPS, which are built from them.
cdef inline Py_ssize_t state_arrays(int solver) noexcept nogil:
    """Flat state arrays (of n_params each) a solver keeps; 0: unknown."""
    if solver == SGD or solver == ADAGRAD or solver == RMSPROP:
        return 1
    if solver == ADAM or solver == ADADELTA or solver == ADAMW \
            or solver == ADAMAX or solver == NADAM:
        return 2
    return 0


cdef inline bint counts_steps(int solver) noexcept nogil:
    """Whether a solver counts its steps (the Adam family's bias corrections)."""
    return solver == ADAM or solver == ADAMW or solver == ADAMAX \
        or solver == NADAM


cdef inline double adam_step_size(double lr, double beta1, double beta2,
                                  double t) noexcept nogil:
    """Bias-corrected Adam step size at step t (1-based)."""
    return lr * sqrt(1 - pow(beta2, t)) / (1 - pow(beta1, t))


cdef inline void nadam_coefficients(double beta1, double beta2, double t,
                                    double* c_m, double* c_g,
                                    double* bc2) noexcept nogil:
    """Nadam's factors at step t: on m, on g, and v's bias correction."""
    c_m[0] = beta1 / (1 - pow(beta1, t + 1))
    c_g[0] = (1 - beta1) / (1 - pow(beta1, t))
    bc2[0] = 1 / (1 - pow(beta2, t))


cdef void _sgd_step(floating* params, const floating* grad,
                    floating* velocity, Py_ssize_t n, floating lr,
                    floating momentum, bint nesterov) noexcept nogil
cdef void _adam_step(floating* params, const floating* grad, floating* m,
                     floating* v, Py_ssize_t n, double step_size,
                     floating beta1, floating beta2,
                     floating eps) noexcept nogil
cdef void _adagrad_step(floating* params, const floating* grad, floating* G,
                        Py_ssize_t n, floating lr, floating eps) noexcept nogil
cdef void _rmsprop_step(floating* params, const floating* grad, floating* v,
                        Py_ssize_t n, floating lr, floating rho,
                        floating eps) noexcept nogil
cdef void _adadelta_step(floating* params, const floating* grad,
                         floating* Eg2, floating* Edx2, Py_ssize_t n,
                         floating lr, floating rho,
                         floating eps) noexcept nogil
cdef void _adamw_step(floating* params, const floating* grad, floating* m,
                      floating* v, Py_ssize_t n, double step_size,
                      floating decay, floating beta1, floating beta2,
                      floating eps) noexcept nogil
cdef void _adamax_step(floating* params, const floating* grad, floating* m,
                       floating* u, Py_ssize_t n, double step_size,
                       floating beta1, floating beta2,
                       floating eps) noexcept nogil
cdef void _nadam_step(floating* params, const floating* grad, floating* m,
                      floating* v, Py_ssize_t n, floating lr, floating c_m,
                      floating c_g, floating bc2, floating beta1,
                      floating beta2, floating eps) noexcept nogil
cdef void _clip_gradient(floating* grad, Py_ssize_t n, double clip_norm,
                         double clip_value) noexcept nogil
