"""Update rules over the flat parameter buffer, one small function each.

The sgd and adam rules and their rounding follow scikit-learn's SGDOptimizer
and AdamOptimizer term by term, so trajectories agree to float64 rounding.
The other rules follow their papers; each def's docstring gives the formula.
Every rule updates params, and its state arrays, in place; ``g`` is the
minibatch gradient and ``lr`` the learning rate of the current epoch.
"""
from cython cimport floating
from libc.math cimport fabs

from fastbp._simd cimport avx2_void, rule_void, use_avx2

# Whether the update rules run their AVX2 builds here (fastbp._simd).
AVX2 = bool(use_avx2())

SOLVERS = {"sgd": SGD, "adam": ADAM, "adagrad": ADAGRAD, "rmsprop": RMSPROP,
           "adadelta": ADADELTA, "adamw": ADAMW, "adamax": ADAMAX,
           "nadam": NADAM}
# Flat state arrays each rule keeps (each of length n_params), in the order
# run_epoch expects them in its state buffer; and the rules with a step
# counter t (bias corrections). Both from the cdef facts in _optimizers.pxd.
STATE_ARRAYS = {name: state_arrays(code) for name, code in SOLVERS.items()}
COUNTS_STEPS = frozenset(name for name, code in SOLVERS.items()
                         if counts_steps(code))


cdef inline rule_void _sgd_rule(floating* params, const floating* grad,
                                floating* velocity, Py_ssize_t n,
                                floating lr, floating momentum,
                                bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating vel
    for i in range(n):
        vel = momentum * velocity[i] - lr * grad[i]
        velocity[i] = vel
        if nesterov:
            params[i] = params[i] + (momentum * vel - lr * grad[i])
        else:
            params[i] = params[i] + vel


cdef avx2_void _sgd_avx2(floating* params, const floating* grad,
                         floating* velocity, Py_ssize_t n, floating lr,
                         floating momentum, bint nesterov) noexcept nogil:
    _sgd_rule(params, grad, velocity, n, lr, momentum, nesterov)


cdef void _sgd_step(floating* params, const floating* grad,
                    floating* velocity, Py_ssize_t n, floating lr,
                    floating momentum, bint nesterov) noexcept nogil:
    if use_avx2():
        _sgd_avx2(params, grad, velocity, n, lr, momentum, nesterov)
    else:
        _sgd_rule(params, grad, velocity, n, lr, momentum, nesterov)


cdef void _adam_step(floating* params, const floating* grad, floating* m,
                     floating* v, Py_ssize_t n, double step_size,
                     floating beta1, floating beta2,
                     floating eps) noexcept nogil:
    # adamw without decay: 1 * params is params, bit for bit.
    _adamw_step(params, grad, m, v, n, step_size, 1, beta1, beta2, eps)


cdef inline rule_void _adagrad_rule(floating* params, const floating* grad,
                                    floating* G, Py_ssize_t n, floating lr,
                                    floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = grad[i]
        G[i] = G[i] + g * g
        params[i] = params[i] - lr * g / (sqrt(G[i]) + eps)


cdef avx2_void _adagrad_avx2(floating* params, const floating* grad,
                             floating* G, Py_ssize_t n, floating lr,
                             floating eps) noexcept nogil:
    _adagrad_rule(params, grad, G, n, lr, eps)


cdef void _adagrad_step(floating* params, const floating* grad, floating* G,
                        Py_ssize_t n, floating lr,
                        floating eps) noexcept nogil:
    if use_avx2():
        _adagrad_avx2(params, grad, G, n, lr, eps)
    else:
        _adagrad_rule(params, grad, G, n, lr, eps)


cdef inline rule_void _rmsprop_rule(floating* params, const floating* grad,
                                    floating* v, Py_ssize_t n, floating lr,
                                    floating rho, floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = grad[i]
        v[i] = rho * v[i] + (1 - rho) * (g * g)
        params[i] = params[i] - lr * g / (sqrt(v[i]) + eps)


cdef avx2_void _rmsprop_avx2(floating* params, const floating* grad,
                             floating* v, Py_ssize_t n, floating lr,
                             floating rho, floating eps) noexcept nogil:
    _rmsprop_rule(params, grad, v, n, lr, rho, eps)


cdef void _rmsprop_step(floating* params, const floating* grad, floating* v,
                        Py_ssize_t n, floating lr, floating rho,
                        floating eps) noexcept nogil:
    if use_avx2():
        _rmsprop_avx2(params, grad, v, n, lr, rho, eps)
    else:
        _rmsprop_rule(params, grad, v, n, lr, rho, eps)


cdef inline rule_void _adadelta_rule(floating* params, const floating* grad,
                                     floating* Eg2, floating* Edx2,
                                     Py_ssize_t n, floating lr, floating rho,
                                     floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, dx
    for i in range(n):
        g = grad[i]
        Eg2[i] = rho * Eg2[i] + (1 - rho) * (g * g)
        dx = sqrt(Edx2[i] + eps) / sqrt(Eg2[i] + eps) * g
        Edx2[i] = rho * Edx2[i] + (1 - rho) * (dx * dx)
        params[i] = params[i] - lr * dx


cdef avx2_void _adadelta_avx2(floating* params, const floating* grad,
                              floating* Eg2, floating* Edx2, Py_ssize_t n,
                              floating lr, floating rho,
                              floating eps) noexcept nogil:
    _adadelta_rule(params, grad, Eg2, Edx2, n, lr, rho, eps)


cdef void _adadelta_step(floating* params, const floating* grad,
                         floating* Eg2, floating* Edx2, Py_ssize_t n,
                         floating lr, floating rho,
                         floating eps) noexcept nogil:
    if use_avx2():
        _adadelta_avx2(params, grad, Eg2, Edx2, n, lr, rho, eps)
    else:
        _adadelta_rule(params, grad, Eg2, Edx2, n, lr, rho, eps)


cdef inline rule_void _adamw_rule(floating* params, const floating* grad,
                                  floating* m, floating* v, Py_ssize_t n,
                                  double step_size, floating decay,
                                  floating beta1, floating beta2,
                                  floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = grad[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * (g * g)
        params[i] = decay * params[i] + (
            -step_size * m[i] / (sqrt(v[i]) + eps))


cdef avx2_void _adamw_avx2(floating* params, const floating* grad,
                           floating* m, floating* v, Py_ssize_t n,
                           double step_size, floating decay, floating beta1,
                           floating beta2, floating eps) noexcept nogil:
    _adamw_rule(params, grad, m, v, n, step_size, decay, beta1, beta2, eps)


cdef void _adamw_step(floating* params, const floating* grad, floating* m,
                      floating* v, Py_ssize_t n, double step_size,
                      floating decay, floating beta1, floating beta2,
                      floating eps) noexcept nogil:
    # AVX2 where the CPU has it (fastbp._simd): the divide and square root
    # are this loop's cost, and four lanes do them in about half the time.
    if use_avx2():
        _adamw_avx2(params, grad, m, v, n, step_size, decay, beta1, beta2, eps)
    else:
        _adamw_rule(params, grad, m, v, n, step_size, decay, beta1, beta2, eps)


cdef inline rule_void _adamax_rule(floating* params, const floating* grad,
                                   floating* m, floating* u, Py_ssize_t n,
                                   double step_size, floating beta1,
                                   floating beta2,
                                   floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, decayed
    for i in range(n):
        g = grad[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        decayed = beta2 * u[i]
        u[i] = decayed if decayed > fabs(g) else fabs(g)
        params[i] = params[i] + (-step_size * m[i] / (u[i] + eps))


cdef avx2_void _adamax_avx2(floating* params, const floating* grad,
                            floating* m, floating* u, Py_ssize_t n,
                            double step_size, floating beta1, floating beta2,
                            floating eps) noexcept nogil:
    _adamax_rule(params, grad, m, u, n, step_size, beta1, beta2, eps)


cdef void _adamax_step(floating* params, const floating* grad, floating* m,
                       floating* u, Py_ssize_t n, double step_size,
                       floating beta1, floating beta2,
                       floating eps) noexcept nogil:
    if use_avx2():
        _adamax_avx2(params, grad, m, u, n, step_size, beta1, beta2, eps)
    else:
        _adamax_rule(params, grad, m, u, n, step_size, beta1, beta2, eps)


cdef inline rule_void _nadam_rule(floating* params, const floating* grad,
                                  floating* m, floating* v, Py_ssize_t n,
                                  floating lr, floating c_m, floating c_g,
                                  floating bc2, floating beta1, floating beta2,
                                  floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = grad[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * (g * g)
        params[i] = params[i] - lr * (c_m * m[i] + c_g * g) / (
            sqrt(bc2 * v[i]) + eps)


cdef avx2_void _nadam_avx2(floating* params, const floating* grad, floating* m,
                           floating* v, Py_ssize_t n, floating lr,
                           floating c_m, floating c_g, floating bc2,
                           floating beta1, floating beta2,
                           floating eps) noexcept nogil:
    _nadam_rule(params, grad, m, v, n, lr, c_m, c_g, bc2, beta1, beta2, eps)


cdef void _nadam_step(floating* params, const floating* grad, floating* m,
                      floating* v, Py_ssize_t n, floating lr, floating c_m,
                      floating c_g, floating bc2, floating beta1,
                      floating beta2, floating eps) noexcept nogil:
    if use_avx2():
        _nadam_avx2(params, grad, m, v, n, lr, c_m, c_g, bc2, beta1, beta2,
                    eps)
    else:
        _nadam_rule(params, grad, m, v, n, lr, c_m, c_g, bc2, beta1, beta2,
                    eps)


cdef void _clip_gradient(floating* grad, Py_ssize_t n, double clip_norm,
                         double clip_value) noexcept nogil:
    cdef Py_ssize_t i
    cdef double sq = 0, norm
    cdef floating scale, hi = <floating> clip_value
    if clip_value > 0:
        for i in range(n):
            if grad[i] > hi:
                grad[i] = hi
            elif grad[i] < -hi:
                grad[i] = -hi
    if clip_norm > 0:
        for i in range(n):
            sq += <double> grad[i] * grad[i]
        norm = sqrt(sq)
        if norm > clip_norm:
            scale = <floating> (clip_norm / norm)
            for i in range(n):
                grad[i] = grad[i] * scale


cdef inline void _check_lengths(Py_ssize_t n, tuple others) except *:
    for other in others:
        if other != n:
            raise ValueError(f"flat buffers differ in length: {n} vs {other}")


cdef inline void _check_t(Py_ssize_t t, str rule) except *:
    if t < 1:
        raise ValueError(f"{rule} steps count from t=1")


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
    _check_t(t, "Adam")
    cdef double step_size = adam_step_size(lr, beta1, beta2, t)
    if n:
        with nogil:
            _adam_step(&params[0], &grad[0], &m[0], &v[0], n, step_size,
                       beta1, beta2, eps)


def adagrad_step(floating[::1] params, const floating[::1] grad,
                 floating[::1] G, double lr, double eps):
    """One Adagrad step, in place. Twin: _reference.adagrad_step.

    Notes
    -----
    Duchi, Hazan & Singer (2011), "Adaptive subgradient methods for online
    learning and stochastic optimization", JMLR 12: G += g^2;
    params -= lr g / (sqrt(G) + eps). G starts at 0 (PyTorch's
    initial_accumulator_value=0; eps outside the root, as PyTorch).
    """
    cdef Py_ssize_t n = params.shape[0]
    _check_lengths(n, (grad.shape[0], G.shape[0]))
    if n:
        with nogil:
            _adagrad_step(&params[0], &grad[0], &G[0], n, <floating> lr,
                          <floating> eps)


def rmsprop_step(floating[::1] params, const floating[::1] grad,
                 floating[::1] v, double lr, double rho, double eps):
    """One RMSprop step, in place. Twin: _reference.rmsprop_step.

    Notes
    -----
    Tieleman & Hinton (2012), Coursera "Neural Networks for Machine
    Learning", lecture 6.5: v = rho v + (1 - rho) g^2;
    params -= lr g / (sqrt(v) + eps). v starts at 0, no momentum, not
    centered (PyTorch's RMSprop with alpha=rho and defaults otherwise).
    """
    cdef Py_ssize_t n = params.shape[0]
    _check_lengths(n, (grad.shape[0], v.shape[0]))
    if n:
        with nogil:
            _rmsprop_step(&params[0], &grad[0], &v[0], n, <floating> lr,
                          <floating> rho, <floating> eps)


def adadelta_step(floating[::1] params, const floating[::1] grad,
                  floating[::1] Eg2, floating[::1] Edx2, double lr,
                  double rho, double eps):
    """One Adadelta step, in place. Twin: _reference.adadelta_step.

    Notes
    -----
    Zeiler (2012), "ADADELTA: an adaptive learning rate method",
    arXiv:1212.5701, Algorithm 1: Eg2 = rho Eg2 + (1 - rho) g^2;
    dx = sqrt(Edx2 + eps) / sqrt(Eg2 + eps) g;
    Edx2 = rho Edx2 + (1 - rho) dx^2; params -= lr dx. The paper has no lr
    (lr = 1, PyTorch's default); lr scales the step as in PyTorch and Keras.
    """
    cdef Py_ssize_t n = params.shape[0]
    _check_lengths(n, (grad.shape[0], Eg2.shape[0], Edx2.shape[0]))
    if n:
        with nogil:
            _adadelta_step(&params[0], &grad[0], &Eg2[0], &Edx2[0], n,
                           <floating> lr, <floating> rho, <floating> eps)


def adamw_step(floating[::1] params, const floating[::1] grad,
               floating[::1] m, floating[::1] v, Py_ssize_t t, double lr,
               double beta1, double beta2, double eps, double weight_decay):
    """AdamW step number t (1-based), in place. Twin: _reference.adamw_step.

    Notes
    -----
    Loshchilov & Hutter (2019), "Decoupled weight decay regularization",
    ICLR: Adam's moments and bias-corrected step as in ``adam_step``, with
    the decay applied to the weights directly instead of through the
    gradient: params = (1 - lr weight_decay) params
    - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
    (PyTorch's AdamW; every parameter, intercepts included, decays).
    """
    cdef Py_ssize_t n = params.shape[0]
    _check_lengths(n, (grad.shape[0], m.shape[0], v.shape[0]))
    _check_t(t, "AdamW")
    cdef double step_size = adam_step_size(lr, beta1, beta2, t)
    if n:
        with nogil:
            _adamw_step(&params[0], &grad[0], &m[0], &v[0], n, step_size,
                        <floating> (1 - lr * weight_decay), <floating> beta1,
                        <floating> beta2, <floating> eps)


def adamax_step(floating[::1] params, const floating[::1] grad,
                floating[::1] m, floating[::1] u, Py_ssize_t t, double lr,
                double beta1, double beta2, double eps):
    """Adamax step number t (1-based), in place. Twin: _reference.adamax_step.

    Notes
    -----
    Kingma & Ba (2015), "Adam: a method for stochastic optimization", ICLR,
    section 7.1: m = beta1 m + (1 - beta1) g; u = max(beta2 u, |g|);
    params -= lr / (1 - beta1^t) * m / (u + eps) (eps in the denominator
    as in Keras, so a zero u never divides by zero).
    """
    cdef Py_ssize_t n = params.shape[0]
    _check_lengths(n, (grad.shape[0], m.shape[0], u.shape[0]))
    _check_t(t, "Adamax")
    cdef double step_size = lr / (1 - pow(beta1, t))
    if n:
        with nogil:
            _adamax_step(&params[0], &grad[0], &m[0], &u[0], n, step_size,
                         <floating> beta1, <floating> beta2, <floating> eps)


def nadam_step(floating[::1] params, const floating[::1] grad,
               floating[::1] m, floating[::1] v, Py_ssize_t t, double lr,
               double beta1, double beta2, double eps):
    """Nadam step number t (1-based), in place. Twin: _reference.nadam_step.

    Notes
    -----
    Dozat (2016), "Incorporating Nesterov momentum into Adam", ICLR
    workshop, Algorithm 2 with a constant momentum mu_t = beta1 (no
    momentum warm-up schedule): m = beta1 m + (1 - beta1) g;
    v = beta2 v + (1 - beta2) g^2;
    m_hat = beta1 m / (1 - beta1^(t+1)) + (1 - beta1) g / (1 - beta1^t);
    v_hat = v / (1 - beta2^t); params -= lr m_hat / (sqrt(v_hat) + eps).
    """
    cdef Py_ssize_t n = params.shape[0]
    cdef double c_m, c_g, bc2
    _check_lengths(n, (grad.shape[0], m.shape[0], v.shape[0]))
    _check_t(t, "Nadam")
    nadam_coefficients(beta1, beta2, t, &c_m, &c_g, &bc2)
    if n:
        with nogil:
            _nadam_step(&params[0], &grad[0], &m[0], &v[0], n, <floating> lr,
                        <floating> c_m, <floating> c_g, <floating> bc2,
                        <floating> beta1, <floating> beta2, <floating> eps)


def clip_gradient(floating[::1] grad, double clip_norm, double clip_value):
    """Clip grad in place: by value, then by global L2 norm.

    Twin: _reference.clip_gradient.

    Notes
    -----
    clip_value > 0: every entry is clipped to [-clip_value, clip_value].
    clip_norm > 0: when ||grad||_2 > clip_norm, grad *= clip_norm / ||grad||_2
    (Pascanu, Mikolov & Bengio (2013), "On the difficulty of training
    recurrent neural networks", ICML). 0 turns either off.
    """
    cdef Py_ssize_t n = grad.shape[0]
    if n:
        with nogil:
            _clip_gradient(&grad[0], n, clip_norm, clip_value)
