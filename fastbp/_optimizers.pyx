"""Update rules over the flat parameter buffer, one small function each.

The rules and their rounding follow scikit-learn's SGDOptimizer and
AdamOptimizer term by term, so trajectories agree to float64 rounding.
"""
from cython cimport floating

SOLVERS = {"sgd": SGD, "adam": ADAM}


cdef void _sgd_step(floating* params, const floating* grad,
                    floating* velocity, Py_ssize_t n, floating lr,
                    floating momentum, bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating vel
    for i in range(n):
        vel = momentum * velocity[i] - lr * grad[i]
        velocity[i] = vel
        if nesterov:
            params[i] = params[i] + (momentum * vel - lr * grad[i])
        else:
            params[i] = params[i] + vel


cdef void _adam_step(floating* params, const floating* grad, floating* m,
                     floating* v, Py_ssize_t n, double step_size,
                     floating beta1, floating beta2,
                     floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = grad[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * (g * g)
        params[i] = params[i] + (-step_size * m[i] / (sqrt(v[i]) + eps))


cdef inline void _check_lengths(Py_ssize_t n, tuple others) except *:
    for other in others:
        if other != n:
            raise ValueError(f"flat buffers differ in length: {n} vs {other}")


def sgd_step(floating[::1] params, const floating[::1] grad,
             floating[::1] velocity, floating lr, floating momentum,
             bint nesterov):
    """One SGD step with (Nesterov) momentum, in place.

    Twin: _reference.sgd_step.

    Notes
    -----
    velocity = momentum * velocity - lr * grad, then
    params += momentum * velocity - lr * grad (Nesterov, as scikit-learn
    writes it) or params += velocity (classical momentum).
    """
    cdef Py_ssize_t n = params.shape[0]
    _check_lengths(n, (grad.shape[0], velocity.shape[0]))
    if n:
        with nogil:
            _sgd_step(&params[0], &grad[0], &velocity[0], n, lr, momentum,
                      nesterov)


def adam_step(floating[::1] params, const floating[::1] grad, floating[::1] m,
              floating[::1] v, Py_ssize_t t, double lr, double beta1,
              double beta2, double eps):
    """Adam step number t (1-based), in place. Twin: _reference.adam_step.

    Notes
    -----
    Kingma & Ba (2014): m = beta1 m + (1 - beta1) g;
    v = beta2 v + (1 - beta2) g^2;
    params -= lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps).
    """
    cdef Py_ssize_t n = params.shape[0]
    _check_lengths(n, (grad.shape[0], m.shape[0], v.shape[0]))
    if t < 1:
        raise ValueError("Adam steps count from t=1")
    cdef double step_size = adam_step_size(lr, beta1, beta2, t)
    if n:
        with nogil:
            _adam_step(&params[0], &grad[0], &m[0], &v[0], n, step_size,
                       beta1, beta2, eps)
