from cython cimport floating
from libc.math cimport pow, sqrt

# Solver codes; fastbp._network maps names to these.
cdef enum:
    SGD = 0
    ADAM = 1


cdef inline double adam_step_size(double lr, double beta1, double beta2,
                                  double t) noexcept nogil:
    """Bias-corrected Adam step size at step t (1-based)."""
    return lr * sqrt(1 - pow(beta2, t)) / (1 - pow(beta1, t))


cdef void _sgd_step(floating* params, const floating* grad,
                    floating* velocity, Py_ssize_t n, floating lr,
                    floating momentum, bint nesterov) noexcept nogil
cdef void _adam_step(floating* params, const floating* grad, floating* m,
                     floating* v, Py_ssize_t n, double step_size,
                     floating beta1, floating beta2,
                     floating eps) noexcept nogil
