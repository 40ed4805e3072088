from cython cimport floating
from libc.math cimport pow, sqrt

# Solver codes: the code of each fastbp._families.SOLVERS row, which holds
# every other fact about the solver; each is one case of _step.
cdef enum:
    SGD = 0
    ADAM = 1
    ADAGRAD = 2
    RMSPROP = 3
    ADADELTA = 4
    ADAMW = 5
    ADAMAX = 6
    NADAM = 7


cdef struct Rule:
    # A Settings record's optimizer fields (fastbp._settings), and the
    # solver's table facts, read once by read_rule.
    int solver
    double lr, momentum, beta_1, beta_2, epsilon, rho, weight_decay
    bint nesterov
    Py_ssize_t state_arrays
    bint counts_steps


cdef Rule read_rule(object settings) except *
cdef void _step(const Rule* r, floating* params, const floating* grad,
                floating* state, Py_ssize_t stride, Py_ssize_t n,
                Py_ssize_t t) noexcept nogil
cdef void _clip_gradient(floating* grad, Py_ssize_t n, double clip_norm,
                         double clip_value) noexcept nogil
