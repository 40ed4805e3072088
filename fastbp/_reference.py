"""Pure-NumPy twin of every compiled function: test oracle and benchmark baseline.

Each function has the name, arguments and ``out`` convention of its compiled
counterpart in ``_blas``, ``_kernels``, ``_optimizers``, ``_epoch`` or
``_curvature``, and is
written as textbook NumPy. ``backend="numpy"`` trains with ``run_epoch``,
``loss_grad`` and ``forward`` from here.

The minibatch pass (``_forward_layers``, ``_loss``, ``_backprop``) and the
solver rules take their namespace from the arrays, so the array-API engine
(``fastbp._array_api``) runs this same code on its devices: the pass is
functional (the array API promises no views from reshape), and the kernels'
in-place twins write its results into their ``out`` arguments.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.externals import array_api_compat
from sklearn.utils._array_api import supported_float_dtypes
from scipy.special import erf, expit, ndtr

from fastbp._epoch import _weightless as _epoch_weightless
from fastbp._families import HIDDEN_ACTIVATIONS, LOSS, SKLEARN_LOSSES, SOLVER_OF_CODE
from fastbp._kernels import ACTIVATIONS, BATCH_NORM_EPS, BATCH_NORM_MOMENTUM, LOSSES
from fastbp._network import bn_views

# The compiled modules' codes, shared rather than renumbered.
LOGISTIC, SOFTMAX, EXP = (ACTIVATIONS[a] for a in ("logistic", "softmax", "exp"))
_ACTIVATION_NAMES = {code: name for name, code in ACTIVATIONS.items()}
# The losses go by name; those beyond scikit-learn's MLP are _other_loss's,
# as the compiled _other_loss_delta takes the codes from ABSOLUTE_ERROR on.
_LOSS_NAMES = {code: name for name, code in LOSSES.items()}
_OTHER_LOSSES = frozenset(LOSSES) - frozenset(SKLEARN_LOSSES)


def _namespace(a):
    """(xp, f): NumPy and a's scalar type for an ndarray or NumPy scalar
    (the twin's own arithmetic), else a's array-API namespace and a maker
    of 0-d arrays of a's dtype on a's device (the hyperparameters rounded to
    a's precision as the compiled code rounds them)."""
    if isinstance(a, (np.ndarray, np.generic)):
        return np, a.dtype.type
    xp = array_api_compat.array_namespace(a)
    where = array_api_compat.device(a)
    return xp, lambda v: xp.asarray(v, dtype=a.dtype, device=where)


def _wide(a):
    """a in float64 where its device has it (MPS has not): the precision of
    the loss and of the derivatives the compiled kernel takes through Z."""
    xp = _namespace(a)[0]
    if xp is np:
        return np.asarray(a, np.float64)
    return xp.astype(a, supported_float_dtypes(xp, array_api_compat.device(a))[0])


def gemm(trans_a, trans_b, alpha, A, B, beta, out):
    A = A.T if trans_a else A
    B = B.T if trans_b else B
    out[...] = alpha * (A @ B) + beta * out


def _softmax(Z, xp=np):
    Z = Z - xp.max(Z, axis=1, keepdims=True)
    Z = xp.exp(Z)
    return Z / xp.sum(Z, axis=1, keepdims=True)


def _normal_pdf(Z):
    return np.exp(-0.5 * Z**2) / np.sqrt(2 * np.pi)


def activation_twins(xp, expit):
    """Each activation's twin in namespace xp, one entry per
    fastbp._families.ACTIVATIONS row: f(Z); f' from A = f(Z) and the
    pre-activation Z (float64 for those the compiled kernel differentiates
    through Z); f''(Z). The output-only ones have no f' or f'': their delta
    comes from the loss. gelu needs erf, which the array API standard lacks:
    NumPy's table alone has it (the array-API path refuses it)."""
    def ones(Z):
        return xp.ones_like(Z)

    return {
        "identity": (lambda Z: Z, lambda A, Z: ones(A), xp.zeros_like),
        "logistic": (expit, lambda A, Z: A * (1 - A),
                     lambda Z: expit(Z) * (1 - expit(Z)) * (1 - 2 * expit(Z))),
        "tanh": (xp.tanh, lambda A, Z: 1 - A**2,
                 lambda Z: -2 * xp.tanh(Z) * (1 - xp.tanh(Z) ** 2)),
        "relu": (lambda Z: xp.maximum(Z, xp.zeros_like(Z)),
                 lambda A, Z: xp.astype(A != 0, A.dtype), xp.zeros_like),
        "softmax": (lambda Z: _softmax(Z, xp), None, None),
        "exp": (xp.exp, None, None),
        "leaky_relu": (lambda Z: xp.where(Z > 0, Z, 0.01 * Z),
                       lambda A, Z: xp.where(Z > 0, ones(Z), 0.01 * ones(Z)),
                       xp.zeros_like),
        "elu": (lambda Z: xp.where(Z > 0, Z, xp.expm1(xp.minimum(Z, xp.zeros_like(Z)))),
                lambda A, Z: xp.where(Z > 0, ones(Z),
                                      xp.exp(xp.minimum(Z, xp.zeros_like(Z)))),
                lambda Z: xp.where(Z > 0, xp.zeros_like(Z),
                                   xp.exp(xp.minimum(Z, xp.zeros_like(Z))))),
        "softplus": (lambda Z: xp.logaddexp(xp.zeros_like(Z), Z),
                     lambda A, Z: expit(Z), lambda Z: expit(Z) * (1 - expit(Z))),
        "silu": (lambda Z: Z * expit(Z),
                 lambda A, Z: expit(Z) * (1 + Z * (1 - expit(Z))),
                 lambda Z: expit(Z) * (1 - expit(Z)) * (2 + Z * (1 - 2 * expit(Z)))),
        "softsign": (lambda Z: Z / (1 + xp.abs(Z)),
                     lambda A, Z: 1 / (1 + xp.abs(Z)) ** 2,
                     lambda Z: -2 * xp.sign(Z) / (1 + xp.abs(Z)) ** 3),
    }


ACTIVATION_TWINS = {
    **activation_twins(np, expit),
    "gelu": (lambda Z: 0.5 * Z * (1 + erf(Z / np.sqrt(2))),
             lambda A, Z: ndtr(Z) + Z * _normal_pdf(Z),
             lambda Z: _normal_pdf(Z) * (2 - Z**2)),
}
# The ones scikit-learn differentiates through A alone: f' in A's dtype.
_THROUGH_A = ("identity", "logistic", "tanh", "relu")


def _table(xp):
    """The activation twins in namespace xp (NumPy's with gelu)."""
    return ACTIVATION_TWINS if xp is np else activation_twins(
        xp, lambda Z: 1 / (1 + xp.exp(-Z)))


def bias_act(Z, b, act, pre=None):
    Z += b
    if pre is not None:
        pre[...] = Z
    Z[...] = ACTIVATION_TWINS[_ACTIVATION_NAMES[act]][0](Z)


def _act_grad(A, delta, act, Z):
    """delta times f'(Z), from A = f(Z) and Z."""
    name = _ACTIVATION_NAMES[act]
    xp = _namespace(delta)[0]
    deriv = _table(xp)[name][1]
    if deriv is None:
        return delta
    if name in _THROUGH_A:
        return delta * deriv(A, Z)
    if Z is None:
        raise ValueError("this activation's derivative needs Z")
    return delta * xp.astype(deriv(A, _wide(Z)), delta.dtype)


def act_grad(A, delta, act, Z=None):
    delta[...] = _act_grad(A, delta, act, Z)


def _check_loss(loss, loss_param):
    """The loss's name, after checking its code and parameter."""
    if loss not in _LOSS_NAMES:
        raise ValueError(f"unknown loss code {loss}")
    name = _LOSS_NAMES[loss]
    if name == "huber" and not loss_param > 0:
        raise ValueError(f"the Huber delta must be > 0, got {loss_param}")
    if name == "quantile" and not 0 < loss_param < 1:
        raise ValueError(f"the quantile must be in (0, 1), got {loss_param}")
    return name


def _other_loss(P, Y, name, loss_param, xp=np):
    """Per-element loss and d loss / d z of the losses beyond scikit-learn's
    MLP (float64; e = p - y, z the output's pre-activation), in namespace xp
    (the array-API engine's too)."""
    E = P - Y
    one = xp.ones_like(E)
    if name == "absolute_error":
        return xp.abs(E), xp.where(E > 0, one, -one)
    if name == "huber":
        d = loss_param
        inside = xp.abs(E) <= d
        return (xp.where(inside, 0.5 * E**2, d * (xp.abs(E) - 0.5 * d)),
                xp.where(inside, E, xp.where(E >= 0, d * one, -d * one)))
    if name == "quantile":
        q = loss_param
        below = Y >= P
        return (xp.where(below, q * (Y - P), (1 - q) * (P - Y)),
                xp.where(below, -q * one, (1 - q) * one))
    if name == "gamma":
        ratio = Y / P  # p = exp(z)
        return ratio - xp.log(ratio) - 1, 1 - ratio
    raise ValueError(f"no twin for loss {name!r}")


def _loss(P, Y, sw, name, loss_param):
    """The batch's mean loss (0-d, float64 where the device has it), the
    output delta (weighted, in P's dtype) and the weight sum."""
    xp, f = _namespace(P)
    P64, Y64 = _wide(P), _wide(Y)
    zero = xp.zeros_like(Y64)
    delta = P - Y  # with the canonical link; the other losses' below
    if name in _OTHER_LOSSES:
        terms, delta = _other_loss(P64, Y64, name, loss_param, xp)
        per_sample, delta = xp.sum(terms, axis=1), xp.astype(delta, P.dtype)
    elif name == "squared_error":
        per_sample = 0.5 * xp.mean((Y64 - P64) ** 2, axis=1)
    elif name == "poisson":
        # y log(y / p) only where y != 0, as the kernel: 0 log 0 is 0 even
        # where p underflowed to 0 (0 / 0 would make it NaN).
        nonzero = Y64 != 0
        ratio = xp.where(nonzero, Y64, 1.0 + zero) / xp.where(nonzero, P64, 1.0 + zero)
        ylogy = xp.where(nonzero, Y64 * xp.log(ratio), zero)
        per_sample = xp.sum(ylogy - Y64 + P64, axis=1)
    else:  # xlogy's: a term is 0 where its factor y (or 1 - y) is
        eps = xp.finfo(P.dtype).eps
        Q = xp.clip(P64, eps, 1 - eps)
        terms = xp.where(Y64 != 0, Y64 * xp.log(Q), zero)
        if name == "binary_log_loss":
            terms = terms + xp.where(Y64 != 1, (1 - Y64) * xp.log(1 - Q), zero)
        per_sample = -xp.sum(terms, axis=1)
    if sw is None:
        return xp.mean(per_sample), delta, f(P.shape[0])
    w = _wide(sw)
    return xp.sum(per_sample * w) / xp.sum(w), delta * sw[:, None], xp.sum(sw)


def loss_delta(P, Y, sw, rows, loss, delta, loss_param=0.0):
    name = _check_loss(loss, loss_param)
    if rows is not None:
        Y, sw = Y[rows], None if sw is None else sw[rows]
    loss, delta[...], sw_sum = _loss(P, Y, sw, name, loss_param)
    return float(loss), float(sw_sum)


# The gradient's terms, in the weights' precision, each also in place as
# the kernel it mirrors.
def _bias_grad(delta, sw_sum):
    xp, f = _namespace(delta)
    return xp.sum(delta, axis=0) / f(sw_sum)


def bias_grad(delta, sw_sum, out):
    out[...] = _bias_grad(delta, sw_sum)


def _l2_grad(grad_W, W, alpha, sw_sum):
    f = _namespace(W)[1]
    return (grad_W + f(alpha) * W) / f(sw_sum)


def l2_grad(grad_W, W, alpha, sw_sum):
    grad_W[...] = _l2_grad(grad_W, W, alpha, sw_sum)


def sq_norm(W):
    W = _wide(W)
    return W @ W


def _l1_grad(grad_W, W, l1, sw_sum):
    xp, f = _namespace(W)
    return grad_W + f(l1) / f(sw_sum) * xp.sign(W)


def l1_grad(grad_W, W, l1, sw_sum):
    grad_W[...] = _l1_grad(grad_W, W, l1, sw_sum)


def abs_sum(W):
    xp = _namespace(W)[0]
    return xp.sum(xp.abs(_wide(W)))


def _uniform(seed, counter):
    """SplitMix64 of seed + (counter + 1) * golden ratio, top 53 bits."""
    u64 = np.uint64
    z = u64(seed) + (counter + u64(1)) * u64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> u64(30))) * u64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> u64(27))) * u64(0x94D049BB133111EB)
    z = z ^ (z >> u64(31))
    return (z >> u64(11)).astype(np.float64) * 2.0**-53


def dropout_mask(shape, rate, seed, row0, col0, width, dtype):
    n, m = shape
    rows = np.arange(row0, row0 + n, dtype=np.uint64)[:, None]
    cols = np.arange(col0, col0 + m, dtype=np.uint64)[None, :]
    u = _uniform(seed, rows * np.uint64(width) + cols)
    return np.where(u < rate, 0, 1 / (1 - rate)).astype(dtype)


def dropout_forward(A, mask, rate, seed, row0, col0, width):
    mask[...] = dropout_mask(A.shape, rate, seed, row0, col0, width, A.dtype)
    A *= mask


def dropout_backward(A, mask, delta, rate):
    delta *= mask
    A *= A.dtype.type(1 - rate)


def _normalize(Z, gamma, stat, batch):
    """gamma * zhat, zhat and (mean, var, 1 / std) of Z (its intercept
    added): with batch, the batch's moments, the running ones stat (if
    given) moved towards them in place; else stat's."""
    xp, f = _namespace(Z)
    if batch:
        mean, var = xp.mean(Z, axis=0), xp.var(Z, axis=0)
        if stat is not None:
            mom, n = BATCH_NORM_MOMENTUM, Z.shape[0]
            stat[0][...] = (1 - mom) * stat[0] + mom * mean
            if n > 1:
                stat[1][...] = (1 - mom) * stat[1] + mom * (var * n / (n - 1))
    else:
        mean, var = stat
    inv = 1 / xp.sqrt(var + f(BATCH_NORM_EPS))
    zhat = (Z - mean) * inv
    return gamma * zhat, zhat, (mean, var, inv)


def bn_forward(Z, b, gamma, zhat, stats, running, batch):
    m = Z.shape[1]
    stat = None if running is None else (running[:m], running[m:])
    Z[...], zhat[...], moments = _normalize(Z + b, gamma, stat, batch)
    stats[...] = np.concatenate(moments)


def _bn_backward(delta, zhat, inv, gamma, sw_sum):
    """The delta before batch norm, and gamma's and beta's gradients."""
    xp, f = _namespace(delta)
    return (gamma * inv * (delta - xp.mean(delta, axis=0)
                           - zhat * xp.mean(delta * zhat, axis=0)),
            xp.sum(delta * zhat, axis=0) / f(sw_sum), _bias_grad(delta, sw_sum))


def bn_backward(delta, zhat, stats, gamma, sw_sum, grad_gamma, grad_beta):
    delta[...], grad_gamma[...], grad_beta[...] = _bn_backward(
        delta, zhat, stats[2 * delta.shape[1] :], gamma, sw_sum)


def gather_rows(X, rows, out):
    out[...] = X[rows]


def _csr(data, indices, indptr, n_cols):
    return sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, n_cols))


def csr_forward(data, indices, indptr, rows, W, out):
    X = _csr(data, indices, indptr, W.shape[0])
    X = X if rows is None else X[rows]
    out[...] = X @ W


def csr_grad(data, indices, indptr, rows, delta, out):
    X = _csr(data, indices, indptr, out.shape[0])
    X = X if rows is None else X[rows]
    out[...] = X.T @ delta


# The update rules, one per fastbp._families.SOLVERS row, named after it
# (_<name>_rule, as the compiled ones): step finds them by name. Each takes
# its state arrays in the row's order, the step count t and the Settings.
# They update in place in the arrays' own namespace, so the array-API path
# (fastbp._array_api) steps with these same rules.


def _sgd_rule(params, grad, arrays, t, s):
    _, f = _namespace(params)
    (velocity,) = arrays
    lr, momentum = f(s.learning_rate), f(s.momentum)
    velocity[...] = momentum * velocity - lr * grad
    if s.nesterov:
        params += momentum * velocity - lr * grad
    else:
        params += velocity


def _adam_rule(params, grad, arrays, t, s):
    xp, f = _namespace(params)
    m, v = arrays
    beta1, beta2, eps = f(s.beta_1), f(s.beta_2), f(s.epsilon)
    m[...] = beta1 * m + (1 - beta1) * grad
    v[...] = beta2 * v + (1 - beta2) * grad**2
    step_size = s.learning_rate * xp.sqrt(1 - beta2**t) / (1 - beta1**t)
    params += -step_size * m / (xp.sqrt(v) + eps)


def _adagrad_rule(params, grad, arrays, t, s):
    xp, f = _namespace(params)
    (G,) = arrays
    G += grad**2
    params -= f(s.learning_rate) * grad / (xp.sqrt(G) + f(s.epsilon))


def _rmsprop_rule(params, grad, arrays, t, s):
    xp, f = _namespace(params)
    (v,) = arrays
    rho = f(s.rho)
    v[...] = rho * v + (1 - rho) * grad**2
    params -= f(s.learning_rate) * grad / (xp.sqrt(v) + f(s.epsilon))


def _adadelta_rule(params, grad, arrays, t, s):
    xp, f = _namespace(params)
    Eg2, Edx2 = arrays
    rho, eps = f(s.rho), f(s.epsilon)
    Eg2[...] = rho * Eg2 + (1 - rho) * grad**2
    dx = xp.sqrt(Edx2 + eps) / xp.sqrt(Eg2 + eps) * grad
    Edx2[...] = rho * Edx2 + (1 - rho) * dx**2
    params -= f(s.learning_rate) * dx


def _adamw_rule(params, grad, arrays, t, s):
    params *= 1 - s.learning_rate * s.weight_decay
    _adam_rule(params, grad, arrays, t, s)


def _adamax_rule(params, grad, arrays, t, s):
    xp, f = _namespace(params)
    m, u = arrays
    beta1, beta2, eps = f(s.beta_1), f(s.beta_2), f(s.epsilon)
    m[...] = beta1 * m + (1 - beta1) * grad
    u[...] = xp.maximum(beta2 * u, xp.abs(grad))
    params -= s.learning_rate / (1 - beta1**t) * m / (u + eps)


def _nadam_rule(params, grad, arrays, t, s):
    xp, f = _namespace(params)
    m, v = arrays
    beta1, beta2, eps = f(s.beta_1), f(s.beta_2), f(s.epsilon)
    m[...] = beta1 * m + (1 - beta1) * grad
    v[...] = beta2 * v + (1 - beta2) * grad**2
    m_hat = beta1 * m / (1 - beta1 ** (t + 1)) + (1 - beta1) * grad / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    params -= s.learning_rate * m_hat / (xp.sqrt(v_hat) + eps)


def step(settings, params, grad, state, t):
    """One step of the settings' solver, in place: its row's rule."""
    row = SOLVER_OF_CODE.get(settings.solver)
    if row is None:
        raise ValueError(f"unknown solver code {settings.solver}")
    n = params.shape[0]
    if grad.shape[0] != n or state.shape[0] != row.state_arrays * n:
        raise ValueError(f"flat buffers differ in length: params {n}, grad "
                         f"{grad.shape[0]}, state {state.shape[0]}")
    if row.counts_steps and t < 1:
        raise ValueError(f"{row.name} steps count from t=1")
    rule = globals()[f"_{row.name}_rule"]
    # Slices are views in every namespace (np.split's, for an ndarray).
    arrays = [state[k * n : (k + 1) * n] for k in range(row.state_arrays)]
    rule(params, grad, arrays, t, settings)


_update = step  # for run_epoch, whose argument step shadows the name


def clip_gradient(grad, clip_norm, clip_value):
    xp, f = _namespace(grad)
    if clip_value > 0:
        grad[...] = xp.clip(grad, -clip_value, clip_value)
    if clip_norm > 0:
        if xp is np:
            norm = float(np.linalg.norm(grad.astype(np.float64)))
        else:
            norm = float(xp.linalg.vector_norm(xp.astype(grad, xp.float64)))
        if norm > clip_norm:
            grad *= f(clip_norm / norm)


def _layers(plan, params):
    """Views of the coefficients and intercepts where the plan puts them
    (a plan of the first layers may read a whole network's buffer)."""
    coefs, intercepts = [], []
    for i, (fan_in, fan_out) in enumerate(zip(plan.units[:-1], plan.units[1:])):
        fan_in, fan_out = int(fan_in), int(fan_out)
        c, b = int(plan.coef_off[i]), int(plan.bias_off[i])
        coefs.append(params[c : c + fan_in * fan_out].reshape(fan_in, fan_out))
        intercepts.append(params[b : b + fan_out])
    return coefs, intercepts


def _input(X, csr, n_features):
    return X if csr is None else _csr(*csr, n_features)


def _masks(plan, seed, row0, n_rows, dtype):
    """Each layer's dropout mask for a batch of n_rows rows, row r's that of
    position row0 + r in the epoch; None where the layer has no dropout."""
    return [None if not rate > 0 else dropout_mask(
                (n_rows, int(plan.units[i + 1])), rate, seed, row0,
                plan.drop_col[i], plan.drop_width, dtype)
            for i, rate in enumerate(plan.drop)]


def _forward_layers(plan, X, coefs, intercepts, masks=None, bn=None):
    """Activations (after dropout), pre-activations and the activations
    before dropout of every layer, in the weights' namespace, functionally
    (X may be a SciPy sparse matrix).

    masks: per layer, the dropout mask or None. bn = (params, running,
    batch, normalized): per layer (gamma, beta) and (mean, var) views or
    None, whether to use batch statistics (and move running, if given,
    towards them in place), and a list receiving each layer's (zhat,
    (mean, var, 1 / std)) or None.
    """
    xp = _namespace(coefs[0])[0]
    table = _table(xp)
    activations, pre, undropped = [X], [None], [X]
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        Z = activations[-1] @ W + b
        if bn is not None and bn[0][i] is not None:
            (gamma, beta), stat = bn[0][i], bn[1][i]
            Z, *normalized = _normalize(Z, gamma, stat, bn[2])
            bn[3].append(normalized)
            Z = Z + beta
        elif bn is not None:
            bn[3].append(None)
        pre.append(Z)
        # In Z's dtype: NumPy's gelu computes erf in float64.
        A = xp.astype(table[_ACTIVATION_NAMES[plan.acts[i]]][0](Z), Z.dtype,
                      copy=False)
        undropped.append(A)
        activations.append(A if not masks or masks[i] is None else A * masks[i])
    return activations, pre, undropped


def _backprop(plan, X, Y, sw, coefs, intercepts, alpha, l1=0.0, masks=None,
              bn=None):
    """Loss of the batch with the L2 and L1 terms, and its flat gradient, in
    the weights' namespace. bn: (params, running) views per layer, the
    running statistics moved in place."""
    L = len(coefs)
    masks = masks or [None] * L
    bn_params, bn_running = bn if bn is not None else ([None] * L, [None] * L)
    normalized = []
    activations, pre, undropped = _forward_layers(
        plan, X, coefs, intercepts, masks, (bn_params, bn_running, True, normalized))
    loss, delta, sw_sum = _loss(activations[-1], Y, sw,
                                _check_loss(plan.loss, plan.loss_param),
                                plan.loss_param)
    xp = _namespace(delta)[0]
    wide_sum = _wide(sw_sum)
    loss = loss + 0.5 * alpha * sum(sq_norm(xp.reshape(W, (-1,)))
                                    for W in coefs) / wide_sum
    if l1:
        loss = loss + l1 * sum(abs_sum(W) for W in coefs) / wide_sum
    grad_W, grad_b, bn_grad = [None] * L, [None] * L, [None] * L
    for i in range(L - 1, -1, -1):
        if normalized[i] is not None:
            zhat, (_, _, inv) = normalized[i]
            delta, *bn_grad[i] = _bn_backward(delta, zhat, inv, bn_params[i][0],
                                              sw_sum)
        grad_W[i] = _l2_grad(activations[i].T @ delta, coefs[i], alpha, sw_sum)
        if l1:
            grad_W[i] = _l1_grad(grad_W[i], coefs[i], l1, sw_sum)
        grad_b[i] = _bias_grad(delta, sw_sum)
        if normalized[i] is not None:  # the normalization cancels the intercept
            grad_b[i] = xp.zeros_like(grad_b[i])
        if i > 0:
            delta = delta @ coefs[i].T
            if masks[i - 1] is not None:
                delta = delta * masks[i - 1]
            delta = _act_grad(undropped[i], delta, plan.acts[i - 1], pre[i])
    return loss, _flat(grad_W, grad_b, [g for pair in bn_grad if pair for g in pair])


def _flat(*lists):
    """One new flat array of the lists' arrays, in order: the engine's layout
    (coefficients, intercepts, then batch norm's scales and shifts)."""
    arrays = [a for part in lists for a in part]
    xp = _namespace(arrays[0])[0]
    return xp.concat([xp.reshape(a, (-1,)) for a in arrays])


def _bn(plan, params, running):
    return bn_views(params, running, plan) if plan.n_running else None


def run_epoch(plan, settings, X, csr, Y, sample_weight, order, batch_size, params,
              grad, work, state, step, seed=0, running=None):
    """One epoch of minibatch training, as _epoch.run_epoch."""
    if settings.solver not in SOLVER_OF_CODE:
        raise ValueError(f"unknown solver code {settings.solver}")
    counts = SOLVER_OF_CODE[settings.solver].counts_steps
    alpha, l1 = settings.alpha, settings.l1
    coefs, intercepts = _layers(plan, params)
    bn = _bn(plan, params, running)
    X = _input(X, csr, int(plan.units[0]))
    n_samples = X.shape[0]
    order = np.arange(n_samples) if order is None else order
    loss_sum = 0.0
    for start in range(0, n_samples, batch_size):
        rows = order[start : start + batch_size]
        sw = None if sample_weight is None else sample_weight[rows]
        if sw is not None and not sw.any():
            raise ValueError(_epoch_weightless(start, len(rows)))
        loss, grad[...] = _backprop(
            plan, X[rows], Y[rows], sw, coefs, intercepts, alpha, l1,
            _masks(plan, seed, start, len(rows), params.dtype), bn,
        )
        loss_sum += len(rows) * float(loss)
        clip_gradient(grad, settings.clip_norm, settings.clip_value)
        step += counts
        _update(settings, params, grad, state, step)
    return loss_sum, step


def loss_grad(plan, X, csr, Y, sample_weight, params, grad, work, alpha, l1=0.0,
              seed=0, running=None, n_threads=1):
    """Full-batch loss with the L2 and L1 terms; its gradient into grad; with
    batch norm, the batch's mean and unbiased variance into running if given."""
    coefs, intercepts = _layers(plan, params)
    X = _input(X, csr, int(plan.units[0]))
    masks = _masks(plan, seed, 0, X.shape[0], params.dtype)
    loss, grad[...] = _backprop(plan, X, Y, sample_weight, coefs, intercepts,
                                alpha, l1, masks, bn=_bn(plan, params, None))
    if plan.n_running and (work is not None or running is not None):
        normalized = []
        _forward_layers(plan, X, coefs, intercepts, masks,
                        (*_bn(plan, params, None), True, normalized))
        n = X.shape[0]
        for i, pair in enumerate(normalized):
            if pair is None:
                continue
            stats, m = np.concatenate(pair[1]), int(plan.units[i + 1])
            if work is not None:  # where the compiled pass leaves them
                work[plan.bn_stat_off[i] : plan.bn_stat_off[i] + stats.size] = stats
            if running is not None:
                at = plan.run_off[i]
                running[at : at + m] = stats[:m]
                running[at + m : at + 2 * m] = stats[m : 2 * m] * stats.dtype.type(
                    n / max(n - 1, 1)
                )
    return float(loss)


def forward(plan, X, csr, params, work, out, running=None, n_threads=1):
    """Network output for every row of X into out."""
    coefs, intercepts = _layers(plan, params)
    X = _input(X, csr, int(plan.units[0]))
    bn = _bn(plan, params, running)
    if bn is not None:
        if running is None:
            raise ValueError("a plan with batch norm needs its running statistics")
        bn = (*bn, False, [])
    out[...] = _forward_layers(plan, X, coefs, intercepts, bn=bn)[0][-1]


class Pass:
    """Twin of _epoch.Pass: forward on one thread bound to a plan and its
    parameters."""

    def __init__(self, plan, params, running=None):
        self.plan, self.params, self.running = plan, params, running

    def __call__(self, X):
        out = np.empty((X.shape[0], int(self.plan.units[-1])), dtype=self.params.dtype)
        forward(self.plan, X, None, self.params,
                np.empty(self.plan.work_size, dtype=self.params.dtype), out, self.running)
        return out


def _act_deriv(Z, act):
    """f'(Z), from the pre-activation Z."""
    Z = np.asarray(Z)
    value, deriv, _ = ACTIVATION_TWINS[_ACTIVATION_NAMES[act]]
    return np.asarray(deriv(value(Z), Z)).astype(Z.dtype)


def _act_second(Z, act):
    """f''(Z), from the pre-activation Z; the mean of both sides at a jump."""
    Z = np.asarray(Z)
    return np.asarray(ACTIVATION_TWINS[_ACTIVATION_NAMES[act]][2](Z)).astype(Z.dtype)


def _output_curvature(P, Y, RZ, out_act, loss, loss_param):
    """d delta / d z times RZ, row by row, without the sample weights: J_g
    for a loss with its canonical link, the loss's second derivative in z
    for the others (huber: 1 inside delta; gamma: y / p; 0 for those
    without curvature)."""
    name = _LOSS_NAMES[loss]
    if name == "huber":
        return np.where(np.abs(P - Y) <= loss_param, RZ, 0).astype(P.dtype)
    if not LOSS[name].has_curvature:
        return np.zeros_like(P)
    if name == "gamma":
        return Y / P * RZ
    return _output_jvp(P, RZ, out_act)


def _output_jvp(P, RZ, out_act):
    """J_g(Z) @ RZ row by row, for the output P = g(Z)."""
    if out_act == SOFTMAX:
        return P * (RZ - (P * RZ).sum(axis=1, keepdims=True))
    if out_act == LOGISTIC:
        return P * (1 - P) * RZ
    if out_act == EXP:
        return P * RZ
    return RZ * np.ones_like(P)


def hessian_vector_product(plan, X, csr, Y, sample_weight, params, v, out, work,
                           rwork, alpha, prepared=False):
    """Exact H @ v of the loss_grad objective (R-operator); returns the loss.

    Recomputes everything whether prepared or not; the loss is NaN when
    prepared, as in the compiled function.
    """
    coefs, intercepts = _layers(plan, params)
    VW, Vb = _layers(plan, v)
    hidden = plan.acts[:-1]
    X = _input(X, csr, int(plan.units[0]))
    if not set(hidden) <= {ACTIVATIONS[name] for name in HIDDEN_ACTIVATIONS}:
        raise ValueError(f"hidden activation codes {sorted(set(hidden))} are not "
                         "all hidden activations")
    loss = float(_backprop(plan, X, Y, sample_weight, coefs, intercepts, alpha)[0])
    # acts[l] = A_{l-1}, pre[l] = Z_{l-1}; act[l]: activation of layer l.
    acts, pre = _forward_layers(plan, X, coefs, intercepts)[:2]
    L, act = len(coefs), plan.acts
    w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    w = w.astype(params.dtype)[:, None]
    S = params.dtype.type(w.sum(dtype=np.float64))
    # G[l]: the delta of layer l before f' (G[L-1] = D[L-1]); D[l] = G[l] f'.
    D, G = [None] * L, [None] * L
    D[-1] = np.empty_like(acts[-1])
    loss_delta(acts[-1], Y, None, None, plan.loss, D[-1], plan.loss_param)
    D[-1] *= w
    for i in range(L - 1, 0, -1):
        G[i - 1] = D[i] @ coefs[i].T
        D[i - 1] = G[i - 1] * _act_deriv(pre[i], act[i - 1])
    RZ, RA = [None] * L, [None] * L
    for i in range(L):
        RZ[i] = np.asarray(acts[i] @ VW[i]) + Vb[i]
        if i > 0:
            RZ[i] += RA[i - 1] @ coefs[i]
        if i < L - 1:
            RA[i] = RZ[i] * _act_deriv(pre[i + 1], act[i])
    RD = _output_curvature(acts[-1], Y, RZ[-1], plan.out_act, plan.loss,
                           plan.loss_param) * w
    HW, Hb = [None] * L, [None] * L
    for i in range(L - 1, -1, -1):
        g = np.asarray(acts[i].T @ RD)
        if i > 0:
            g += RA[i - 1].T @ D[i]
        HW[i] = (g + params.dtype.type(alpha) * VW[i]) / S
        Hb[i] = RD.sum(axis=0) / S
        if i > 0:
            RD = (RD @ coefs[i].T + D[i] @ VW[i].T) * _act_deriv(
                pre[i], act[i - 1]
            ) + G[i - 1] * _act_second(pre[i], act[i - 1]) * RZ[i - 1]
    out[...] = _flat(HW, Hb)
    return float("nan") if prepared else loss


def jacobian(plan, X, csr, params, work, out):
    """out[i, k, :] = d output[i, k] / d X[i, :]."""
    coefs, intercepts = _layers(plan, params)
    X = _input(X, csr, int(plan.units[0]))
    acts, pre = _forward_layers(plan, X, coefs, intercepts)[:2]
    P = acts[-1]
    for k in range(P.shape[1]):
        D = _output_jvp(P, np.eye(P.shape[1], dtype=P.dtype)[k], plan.out_act)
        for i in range(len(coefs) - 1, 0, -1):
            D = (D @ coefs[i].T) * _act_deriv(pre[i], plan.acts[i - 1])
        out[:, k, :] = D @ coefs[0].T


def all_finite(a):
    return bool(np.isfinite(a).all())
