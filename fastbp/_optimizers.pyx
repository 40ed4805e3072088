"""The solvers' update rules over the flat parameter buffer, and the one
dispatcher that runs them (``_step``).

Each solver's facts (state arrays, step counting, schedule, formula) are its
row in ``fastbp._families.SOLVERS``; its arithmetic is its case in
``_step_rule``, which computes the step size, then its loop below. The sgd
and adam rules and their rounding follow scikit-learn's SGDOptimizer and
AdamOptimizer term by term, so trajectories agree to float64 rounding; the
others follow their papers. Every rule updates params, and its state
arrays, in place; ``g`` is the minibatch gradient and ``lr`` the learning
rate of the current epoch. float32 rules compute in float32 (step sizes
rounded to float32 once a step), as scikit-learn's NumPy updates of float32
arrays do. Twin: ``fastbp._reference.step``.
"""
from cython cimport floating
from libc.math cimport fabs, sqrtf

from fastbp._families import SOLVER_OF_CODE, SOLVERS as _ROWS
from fastbp._simd cimport avx2_void, rule_void, use_avx2

# Whether the update rules run their AVX2 build here (fastbp._simd).
AVX2 = bool(use_avx2())

# Derived from the table: name -> code, state arrays (each of length
# n_params, in the order the rule takes them), the solvers with a step count.
SOLVERS = {s.name: s.code for s in _ROWS}
STATE_ARRAYS = {s.name: s.state_arrays for s in _ROWS}
COUNTS_STEPS = frozenset(s.name for s in _ROWS if s.counts_steps)


cdef inline floating _root(floating x) noexcept nogil:
    # sqrtf for float32: libc's sqrt would take every float32 update
    # through double, at half the lanes and twice the divider time.
    if floating is float:
        return sqrtf(x)
    return sqrt(x)


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


cdef inline rule_void _adagrad_rule(floating* params, const floating* grad,
                                    floating* G, Py_ssize_t n, floating lr,
                                    floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = grad[i]
        G[i] = G[i] + g * g
        params[i] = params[i] - lr * g / (_root(G[i]) + eps)


cdef inline rule_void _rmsprop_rule(floating* params, const floating* grad,
                                    floating* v, Py_ssize_t n, floating lr,
                                    floating rho, floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = grad[i]
        v[i] = rho * v[i] + (1 - rho) * (g * g)
        params[i] = params[i] - lr * g / (_root(v[i]) + eps)


cdef inline rule_void _adadelta_rule(floating* params, const floating* grad,
                                     floating* Eg2, floating* Edx2,
                                     Py_ssize_t n, floating lr, floating rho,
                                     floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, dx
    for i in range(n):
        g = grad[i]
        Eg2[i] = rho * Eg2[i] + (1 - rho) * (g * g)
        dx = _root(Edx2[i] + eps) / _root(Eg2[i] + eps) * g
        Edx2[i] = rho * Edx2[i] + (1 - rho) * (dx * dx)
        params[i] = params[i] - lr * dx


cdef inline rule_void _adamw_rule(floating* params, const floating* grad,
                                  floating* m, floating* v, Py_ssize_t n,
                                  floating step_size, floating decay,
                                  floating beta1, floating beta2,
                                  floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g
    for i in range(n):
        g = grad[i]
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * (g * g)
        params[i] = decay * params[i] + (
            -step_size * m[i] / (_root(v[i]) + eps))


cdef inline rule_void _adamax_rule(floating* params, const floating* grad,
                                   floating* m, floating* u, Py_ssize_t n,
                                   floating step_size, floating beta1,
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
            _root(bc2 * v[i]) + eps)

cdef inline double _adam_step_size(const Rule* r, Py_ssize_t t) noexcept nogil:
    """Adam's bias-corrected step size at step t (adam, adamw)."""
    return r.lr * sqrt(1 - pow(r.beta_2, t)) / (1 - pow(r.beta_1, t))


cdef inline rule_void _step_rule(const Rule* r, floating* params,
                                 const floating* grad, floating* state,
                                 Py_ssize_t stride, Py_ssize_t n,
                                 Py_ssize_t t) noexcept nogil:
    # The one place each solver's step size and factors are computed (double,
    # then the rule's floating type), and its rule chosen: once per step, the
    # loops stay specialised.
    cdef floating* s2 = state + stride
    cdef floating beta1 = <floating> r.beta_1, beta2 = <floating> r.beta_2
    cdef floating eps = <floating> r.epsilon
    if r.solver == SGD:
        _sgd_rule(params, grad, state, n, <floating> r.lr,
                  <floating> r.momentum, r.nesterov)
    elif r.solver == ADAM:
        # adamw without decay: 1 * params is params, bit for bit.
        _adamw_rule(params, grad, state, s2, n,
                    <floating> _adam_step_size(r, t), 1, beta1, beta2, eps)
    elif r.solver == ADAGRAD:
        _adagrad_rule(params, grad, state, n, <floating> r.lr, eps)
    elif r.solver == RMSPROP:
        _rmsprop_rule(params, grad, state, n, <floating> r.lr,
                      <floating> r.rho, eps)
    elif r.solver == ADADELTA:
        _adadelta_rule(params, grad, state, s2, n, <floating> r.lr,
                       <floating> r.rho, eps)
    elif r.solver == ADAMW:
        _adamw_rule(params, grad, state, s2, n,
                    <floating> _adam_step_size(r, t),
                    <floating> (1 - r.lr * r.weight_decay), beta1, beta2, eps)
    elif r.solver == ADAMAX:
        _adamax_rule(params, grad, state, s2, n,
                     <floating> (r.lr / (1 - pow(r.beta_1, t))), beta1, beta2,
                     eps)
    elif r.solver == NADAM:
        _nadam_rule(params, grad, state, s2, n, <floating> r.lr,
                    <floating> (r.beta_1 / (1 - pow(r.beta_1, t + 1))),
                    <floating> ((1 - r.beta_1) / (1 - pow(r.beta_1, t))),
                    <floating> (1 / (1 - pow(r.beta_2, t))), beta1, beta2, eps)


cdef avx2_void _step_avx2(const Rule* r, floating* params,
                          const floating* grad, floating* state,
                          Py_ssize_t stride, Py_ssize_t n,
                          Py_ssize_t t) noexcept nogil:
    _step_rule(r, params, grad, state, stride, n, t)


cdef void _step(const Rule* r, floating* params, const floating* grad,
                floating* state, Py_ssize_t stride, Py_ssize_t n,
                Py_ssize_t t) noexcept nogil:
    """Step t (1-based; counted by the solvers that count steps) of r's
    solver on n parameters, its state arrays stride apart."""
    # AVX2 where the CPU has it (fastbp._simd): the divides and square roots
    # are these loops' cost, and four lanes do them in about half the time.
    if use_avx2():
        _step_avx2(r, params, grad, state, stride, n, t)
    else:
        _step_rule(r, params, grad, state, stride, n, t)


cdef Rule read_rule(object settings) except *:
    """The optimizer fields of a Settings record and its solver's facts."""
    cdef Rule r
    row = SOLVER_OF_CODE.get(settings.solver)
    if row is None:
        raise ValueError(f"unknown solver code {settings.solver}")
    r.solver = row.code
    r.state_arrays = row.state_arrays
    r.counts_steps = row.counts_steps
    r.lr = settings.learning_rate
    r.momentum = settings.momentum
    r.nesterov = settings.nesterov
    r.beta_1 = settings.beta_1
    r.beta_2 = settings.beta_2
    r.epsilon = settings.epsilon
    r.rho = settings.rho
    r.weight_decay = settings.weight_decay
    return r


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

def step(settings, floating[::1] params, const floating[::1] grad,
         floating[::1] state, Py_ssize_t t):
    """One step of the settings' solver, in place on params and state.

    Twin: _reference.step.

    Parameters
    ----------
    settings : Settings
        ``fastbp._settings.Settings``: the solver's code and its
        hyperparameters (learning_rate is the step's lr).
    params, grad : ndarray of shape (n,)
    state : ndarray of shape (k n,)
        The solver's k = ``STATE_ARRAYS[name]`` flat state arrays one after
        the other, as ``run_epoch`` keeps them.
    t : int
        The step's number, from 1, for the solvers that count steps
        (``COUNTS_STEPS``); ignored by the others.

    Notes
    -----
    Each solver's formula is its row in ``fastbp._families.SOLVERS`` (and
    the estimators' ``solver`` docstring).
    """
    cdef Rule r = read_rule(settings)
    cdef Py_ssize_t n = params.shape[0]
    if grad.shape[0] != n or state.shape[0] != r.state_arrays * n:
        raise ValueError(
            f"flat buffers differ in length: params {n}, grad "
            f"{grad.shape[0]}, state {state.shape[0]} (expected "
            f"{r.state_arrays} x {n})")
    if r.counts_steps and t < 1:
        raise ValueError(f"{SOLVER_OF_CODE[r.solver].name} steps count from t=1")
    if n:
        with nogil:
            _step(&r, &params[0], &grad[0], &state[0], n, n, t)


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
