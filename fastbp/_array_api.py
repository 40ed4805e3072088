"""Training and prediction where the data lives: arrays of any array-API
library (PyTorch, CuPy, array_api_strict) under scikit-learn's
``array_api_dispatch``.

``space_of`` (a fit) and ``predict_space`` (a fitted model's methods) are
the one decision: a call runs here when scikit-learn's switch is on and its
input is an array-API array that is not NumPy's; everything else runs on
the compiled engine, untouched. Here the drivers (``fastbp._stochastic``,
and ``fastbp._full_batch`` for lbfgs) run as for NumPy input, with
``Engine`` in the place of the compiled engine: the twin's algorithm
(``fastbp._reference``: its minibatch pass, solver rules and clipping,
which take their namespace from the arrays) on a flat parameter array on
the input's device. The array API does not promise that a
reshape is a view, so the layers are re-read from the flat array every
minibatch and every update writes the flat array itself, in place (which
NumPy-like libraries all allow).

What stays on the host: the initial weights, the row order and the
dropout masks (drawn with NumPy exactly as for the compiled engine, then
moved), lbfgs's iterate (SciPy's), the labels (classes are bookkeeping;
the targets are encoded there once per fit and moved), and the validation
score (the validation predictions are moved to the host once per epoch and
scored as for NumPy input).
"""

import numpy as np
from sklearn import get_config
from sklearn.externals import array_api_compat
from sklearn.utils._array_api import (
    _convert_to_numpy,
    _is_numpy_namespace,
    get_namespace_and_device,
    supported_float_dtypes,
)

import fastbp._reference as _reference
from fastbp._epoch import _weightless
from fastbp._families import SOLVER_OF_CODE
from fastbp._network import bn_views, param_offsets
from fastbp._params import STOCHASTIC_SOLVERS

_USE_NUMPY = "; use NumPy input (or turn array_api_dispatch off) for it"


class Space:
    """An array-API namespace and device a call computes in."""

    def __init__(self, xp, device):
        self.xp, self.device = xp, device

    @property
    def name(self):
        return self.xp.__name__.rsplit(".", 1)[-1]

    def asarray(self, a):
        """A host array (or None) moved to this namespace and device."""
        if a is None:
            return None
        return self.xp.asarray(np.ascontiguousarray(a), device=self.device)

    def to_host(self, a):
        """a as a NumPy array if it is an array of this namespace; anything
        else (None, lists, NumPy arrays) as it is."""
        if a is None or isinstance(a, (np.ndarray, list, tuple)):
            return a
        xp, is_array_api, _ = get_namespace_and_device(a)
        if not is_array_api or _is_numpy_namespace(xp):
            return a
        return _convert_to_numpy(a, xp)

    def float_dtypes(self):
        """validate_data's dtype list: float64 where the device has it, as
        scikit-learn's array-API estimators."""
        return list(supported_float_dtypes(self.xp, self.device))

    def host_dtype(self, dtype):
        return np.dtype(np.float64 if dtype == self.xp.float64 else np.float32)

    def xp_dtype(self, dtype):
        return self.xp.float64 if dtype == np.float64 else self.xp.float32


def foreign(a):
    """True for an array of an array-API library other than NumPy (fitted
    weights this path left); False for ndarrays and anything else."""
    return not isinstance(a, np.ndarray) and array_api_compat.is_array_api_obj(a)


def space_of(*arrays):
    """The Space a call on these arrays computes in, or None for the
    compiled engine: scikit-learn's array_api_dispatch off, or the arrays
    NumPy's (or lists, sparse matrices, data frames: not array-API arrays)."""
    if not get_config()["array_api_dispatch"]:
        return None
    if all(a is None or isinstance(a, np.ndarray) for a in arrays):
        return None  # the common case, decided without asking scikit-learn
    try:
        xp, is_array_api, device = get_namespace_and_device(*arrays)
    except TypeError:  # not arrays (data frames): the usual validation's
        return None
    if not is_array_api or _is_numpy_namespace(xp):
        return None
    return Space(xp, device)


def predict_space(estimator, X, method):
    """The Space a fitted estimator's method computes in for X, or None for
    the compiled engine (an unfitted estimator: None, for its usual error)."""
    coefs = estimator.__dict__.get("coefs_")
    return None if not coefs else call_space(coefs[0], X, estimator, method)


def call_space(coef, X, estimator, method):
    """The Space a call on X with fitted weights (coef, the first layer's)
    computes in, or None for the compiled engine; a ValueError when X and
    the weights are in different namespaces or devices (scikit-learn's rule:
    inputs after fit use fit's namespace and device)."""
    fitted_here = foreign(coef)
    if not fitted_here and type(X) is np.ndarray:
        return None  # the common case, decided without asking scikit-learn
    space = space_of(X)
    if not fitted_here and space is None:
        return None
    fitted = space_of(coef) if fitted_here else None
    if fitted_here and fitted is None:
        raise ValueError(
            f"{type(estimator).__name__}.{method}(): the model was fitted on "
            f"{type(coef).__module__.split('.')[0]} arrays; pass X in that "
            "namespace with sklearn.set_config(array_api_dispatch=True), or "
            "move the model to NumPy first: "
            "sklearn.utils._array_api.move_estimator_to(estimator, numpy, 'cpu')."
        )
    if space is None or fitted is None or (space.xp, space.device) != (
            fitted.xp, fitted.device):
        raise ValueError(
            f"Inputs passed to {type(estimator).__name__}.{method}() must use "
            "the same namespace and the same device as those passed to fit(): "
            f"fit used {_where(fitted)}, {method} got {_where(space)}. Move "
            "the estimator with sklearn.utils._array_api.move_estimator_to, "
            "or move X."
        )
    return space


def _where(space):
    return "numpy" if space is None else f"{space.name} on {space.device}"


def check_fit(s, activation_names):
    """Refuse, by name, what this path does not compute (s: the fit's
    settings; activation_names: every layer's, output last)."""
    if s.solver not in STOCHASTIC_SOLVERS + ("lbfgs",):
        raise ValueError(
            f"solver={s.solver!r} is not supported on array-API input: its "
            f"Hessian-vector products run on NumPy; lbfgs and the stochastic "
            f"solvers {', '.join(STOCHASTIC_SOLVERS)} are{_USE_NUMPY}."
        )
    if s.solver == "lbfgs" and s.batch_norm:
        raise ValueError("batch_norm with solver='lbfgs' is not supported on "
                         f"array-API input{_USE_NUMPY}.")
    unsupported = sorted({a for a in activation_names
                          if a not in _reference.activation_twins(np, None)})
    if unsupported:
        raise ValueError(
            f"activation {unsupported[0]!r} is not supported on array-API input "
            f"(the array API standard has no erf){_USE_NUMPY}."
        )


def check_labels(classes, y_type):
    """Classification targets this path decodes on the device: numeric
    labels, binary or multiclass."""
    if classes.dtype.kind not in "biuf":
        raise ValueError("class labels must be numbers on array-API input (got "
                         f"{classes.dtype}); encode them or use NumPy input.")
    if y_type not in ("binary", "multiclass"):
        raise ValueError(f"{y_type} targets are not supported on array-API "
                         f"input{_USE_NUMPY}.")


def layers(xp, flat, units):
    """coefs and intercepts lists read from flat at the engine's offsets
    (coefficients, then intercepts); views where the library makes them."""
    coef_off, bias_off, _ = param_offsets(units)
    coefs, intercepts = [], []
    for i, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:])):
        c, b = int(coef_off[i]), int(bias_off[i])
        coefs.append(xp.reshape(flat[c : c + fan_in * fan_out], (fan_in, fan_out)))
        intercepts.append(flat[b : b + fan_out])
    return coefs, intercepts


# One new flat array of the lists' arrays, in order (the engine's layout).
pack = _reference._flat


class Engine:
    """The drivers' engine for a Space: the methods of
    ``fastbp._backend.Backend`` the stochastic driver and lbfgs's
    Objective call, in the space."""

    name = "array_api"
    reuses_work = False  # no Hessian-vector products here

    def __init__(self, space):
        self.space, self.xp = space, space.xp
        self._host_weights = (None, None)

    def __repr__(self):
        return f"Engine({self.space.name!r}, {self.space.device!r})"

    def kernel_input(self, X, dtype):
        return self.xp.astype(X, self.space.xp_dtype(dtype), copy=False), None

    def buffers(self, plan, flat):
        return None, None  # the gradient is a new array per minibatch

    def host(self, a):
        return self.space.to_host(a)

    def host_dtype(self, flat):
        return self.space.host_dtype(flat.dtype)

    def all_finite(self, a):
        if isinstance(a, np.ndarray):  # lbfgs's host iterate
            return bool(np.isfinite(a).all())
        return bool(self.xp.all(self.xp.isfinite(a)))

    def workspace(self, plan, dtype):
        return None  # every pass allocates its own arrays

    def targets(self, Y, dtype):
        return self.xp.astype(Y, self.space.xp_dtype(dtype), copy=False)

    def loss_grad(self, plan, X, csr, Y, sample_weight, params, grad, work,
                  alpha, l1=0.0, seed=0, running=None, n_threads=1):
        """lbfgs's full-batch loss and gradient, as the twin's loss_grad: the
        iterate params is SciPy's, on the host; it is moved to the device,
        the passes run there, and the gradient comes back into grad."""
        units = tuple(int(u) for u in plan.units)
        coefs, intercepts = layers(self.xp, self.space.asarray(params), units)
        value, g = _reference._backprop(plan, X, Y, sample_weight, coefs,
                                        intercepts, alpha, l1)
        grad[...] = self.host(g)
        return float(value)

    def loss_delta(self, *args):
        return _reference.loss_delta(*args)  # on host copies (validation)

    def validation_output(self, X, model, plan_for, n_jobs):
        plan = plan_for(1)
        coefs, intercepts = layers(self.xp, model.flat, model.units)
        X = self.xp.astype(X, model.flat.dtype, copy=False)
        bn = None
        if model.running is not None:
            bn = (*bn_views(model.flat, model.running, plan), False, [])
        out = _reference._forward_layers(plan, X, coefs, intercepts, bn=bn)[0][-1]
        return self.host(out)

    def _weights_on_host(self, sample_weight):
        # The weightless-batch check reads the weights on the host, copied
        # once per fit rather than synchronising every minibatch.
        if self._host_weights[0] is not sample_weight:
            self._host_weights = (sample_weight, self.host(sample_weight))
        return self._host_weights[1]

    def _masks(self, plan, seed, start, stop, dtype):
        """Each layer's dropout mask for rows start:stop of the epoch, or
        None: the twin's counter-based masks, drawn on the host (uint64
        arithmetic the array API does not promise on every device) and
        moved; the same masks as the compiled engine's."""
        host = np.float64 if dtype == self.xp.float64 else np.float32
        return [self.space.asarray(m)  # None stays None
                for m in _reference._masks(plan, seed, start, stop - start, host)]

    def run_epoch(self, plan, settings, X, csr, Y, sample_weight, order,
                  batch_size, params, grad, work, state, step, seed=0,
                  running=None):
        """One epoch of minibatch training, as _reference.run_epoch."""
        xp = self.xp
        row = SOLVER_OF_CODE[settings.solver]
        units = tuple(int(u) for u in plan.units)
        n_samples = X.shape[0]
        host_order = np.arange(n_samples) if order is None else order
        rows_all = None if order is None else self.space.asarray(
            order.astype(np.int64))
        sw_host = None if sample_weight is None else self._weights_on_host(
            sample_weight)
        loss_sum = 0.0
        for start in range(0, n_samples, batch_size):
            stop = min(start + batch_size, n_samples)
            if sw_host is not None and not sw_host[host_order[start:stop]].any():
                raise ValueError(_weightless(start, stop - start))
            if rows_all is None:
                Xb, Yb = X[start:stop, ...], Y[start:stop, ...]
                sw = None if sample_weight is None else sample_weight[start:stop]
            else:
                rows = rows_all[start:stop]
                Xb, Yb = xp.take(X, rows, axis=0), xp.take(Y, rows, axis=0)
                sw = None if sample_weight is None else xp.take(sample_weight, rows)
            coefs, intercepts = layers(xp, params, units)
            bn = bn_views(params, running, plan) if plan.n_running else None
            value, g = _reference._backprop(
                plan, Xb, Yb, sw, coefs, intercepts, settings.alpha, settings.l1,
                self._masks(plan, seed, start, stop, params.dtype), bn)
            loss_sum = loss_sum + (stop - start) * value
            _reference.clip_gradient(g, settings.clip_norm, settings.clip_value)
            step += row.counts_steps
            _reference.step(settings, params, g, state, step)
        return float(loss_sum), step



def fitted_output(estimator, space, X, n_layers=None):
    """The fitted network's output for X in space (of its first n_layers
    layers: transform's features), after scikit-learn's checks of X."""
    from sklearn.utils.validation import validate_data

    X = validate_data(estimator, X, reset=False, dtype=space.float_dtypes())
    coefs, intercepts = estimator.coefs_, estimator.intercepts_
    plan = estimator._network().plan(
        [coefs[0].shape[0], *(W.shape[1] for W in coefs)], 1)
    n = len(coefs) if n_layers is None else n_layers
    xp = space.xp
    bn = None
    if getattr(estimator, "batch_norm_scale_", None) is not None:
        d = estimator.__dict__
        hidden = len(coefs) - 1
        bn = ([(d["batch_norm_scale_"][i], d["batch_norm_shift_"][i])
               for i in range(hidden)] + [None],
              [(d["batch_norm_mean_"][i], d["batch_norm_var_"][i])
               for i in range(hidden)] + [None], False, [])
    out = _reference._forward_layers(
        plan, xp.astype(X, coefs[0].dtype, copy=False), coefs[:n], intercepts[:n],
        bn=bn)[0][-1]
    if not bool(xp.all(xp.isfinite(out))):
        raise ValueError(
            "The network's output is not finite: the values of X overflow the "
            f"fitted {coefs[0].dtype} network (scale them as the training data "
            "was), or the weights are extreme."
        )
    return out


def decode_classes(output, classes):
    """Labels of a binary or multiclass output, in output's namespace."""
    xp, _, device = get_namespace_and_device(output)
    classes = xp.asarray(classes, device=device)
    if output.shape[1] == 1:
        index = xp.astype(output[:, 0] > 0.5, xp.int64)
    else:
        index = xp.argmax(output, axis=1)
    return xp.take(classes, index)


def log(a):
    """log(a) in a's namespace (predict_log_proba)."""
    return get_namespace_and_device(a)[0].log(a)


def binary_proba(output):
    """[1 - p, p] columns of a one-column output, in its namespace."""
    xp, _, _ = get_namespace_and_device(output)
    p = output[:, 0]
    return xp.stack([1 - p, p], axis=1)


def refuse(what, X=None, coefs=None):
    """A TypeError for a NumPy-only tool given array-API input or a model
    fitted on it; None when neither."""
    if space_of(X) is None and not (coefs and foreign(coefs[0])):
        return
    raise TypeError(
        f"{what} is not supported on array-API arrays: it runs on NumPy. Move "
        "the estimator and the data to NumPy first (sklearn.utils._array_api."
        "move_estimator_to(estimator, numpy, 'cpu'))."
    )
