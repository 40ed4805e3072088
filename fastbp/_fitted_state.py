"""The fitted state's consistency, checked before the state is used.

A model file is user input, and fitted attributes can be edited: a state
whose arrays do not describe one network would otherwise be reinterpreted
silently (the compiled code reads the flat buffer by the layer widths) or
fail deep inside with an IndexError, KeyError or a buffer-dtype error.
``check_fitted_state`` raises a ValueError naming the first inconsistency.

It runs in full when a model is loaded (``__setstate__``: pickle, joblib and
skops all restore through it) and whenever the state is used after it may
have changed: ``ensure_checked`` compares a cheap snapshot of the state (the
identity of every attribute the check reads, and of the arrays in its lists)
with the last checked one, and checks again only when they differ. ``trust`` records a state fit has just built.
"""

import weakref
from numbers import Integral, Real

import numpy as np
from sklearn.base import is_classifier

from fastbp._families import HIDDEN_ACTIVATIONS, LOSSES
from fastbp._snapshot import same, snapshot
from fastbp._network import bn_sizes, hidden_activations, param_offsets
from fastbp._state import Optimizer

_HIDDEN = frozenset(HIDDEN_ACTIVATIONS)
_BATCH_NORM = ("batch_norm_scale_", "batch_norm_shift_", "batch_norm_mean_",
               "batch_norm_var_")
# Attributes every fitted estimator has; one without all of them is broken
# (none of them: not fitted).
_CORE = ("coefs_", "intercepts_", "n_features_in_", "n_layers_", "n_outputs_",
         "out_activation_")
# Everything the check reads, so everything whose change triggers it again;
# the first _N_CONTAINERS may be lists or dicts, whose contents count too.
_WATCHED = ("coefs_", "intercepts_", "activation", "_optimizer") + _BATCH_NORM + (
    "n_features_in_", "n_layers_", "n_outputs_", "out_activation_",
    "feature_names_in_", "classes_", "_label_binarizer", "t_", "n_iter_", "loss",
    "huber_delta", "quantile",
)
_N_CONTAINERS = 8
_OUTPUTS = {  # y_type_ -> output activation (classifier)
    "binary": "logistic", "multilabel-indicator": "logistic",
    "multiclass": "softmax",
}
_REGRESSOR_OUTPUTS = {loss.name: loss.output for loss in LOSSES if loss.regressor}

# id(estimator) -> (weak reference to it, _snapshot of its last checked
# state, memo of that state); the snapshot holds the objects, so identity
# comparisons are exact.
_checked = {}


class _Inconsistent(ValueError):
    pass


def _fail(what):
    raise _Inconsistent(what)


def _is_int(v):
    """v is a non-negative integer (not a bool)."""
    return isinstance(v, Integral) and not isinstance(v, (bool, np.bool_)) and v >= 0


def _arrays(d, name, ndim, dtype, lengths=None, finite=True):
    """d[name] as a list of ndim-dimensional arrays of dtype (the first one's
    if None), each of the given length(s) if lengths is given, finite if
    finite (fit guarantees it for the trained parameters only)."""
    arrays = d[name]
    if type(arrays) is not list:
        _fail(f"{name} is a {type(arrays).__name__}, not a list of arrays")
    if lengths is not None and len(arrays) != len(lengths):
        _fail(f"{name} has {len(arrays)} arrays, the network needs {len(lengths)}")
    for i, a in enumerate(arrays):
        where = f"{name}[{i}]"
        if not isinstance(a, np.ndarray):
            _fail(f"{where} is a {type(a).__name__}, not a NumPy array")
        if a.ndim != ndim:
            _fail(f"{where} has {a.ndim} dimension(s), not {ndim}")
        if a.dtype not in (np.float32, np.float64) or (
            dtype is not None and a.dtype != dtype
        ):
            _fail(f"{where} has dtype {a.dtype}, the network's is "
                  f"{dtype or 'float32 or float64'}")
        dtype = a.dtype
        if lengths is not None and a.shape != (lengths[i],):
            _fail(f"{where} has shape {a.shape}, the network needs "
                  f"({lengths[i]},)")
        if finite and not np.isfinite(a).all():
            _fail(f"{where} holds non-finite values")
    return arrays


def _check_layers(d):
    """The widths the weights describe, and their dtype."""
    coefs = _arrays(d, "coefs_", 2, None)
    if not coefs:
        _fail("coefs_ is empty")
    dtype = coefs[0].dtype
    units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
    for i in range(1, len(coefs)):
        if coefs[i].shape[0] != units[i]:
            _fail(f"coefs_[{i}] has shape {coefs[i].shape} but coefs_[{i - 1}] "
                  f"has {units[i]} outputs: the layers do not chain")
    _arrays(d, "intercepts_", 1, dtype, units[1:])
    if min(units) < 1:
        _fail(f"the layer widths {units} include an empty layer")
    for name, value in (("n_features_in_", units[0]), ("n_outputs_", units[-1]),
                        ("n_layers_", len(units))):
        if not _is_int(d[name]) or d[name] != value:
            _fail(f"{name} is {d[name]!r} but the weights make it {value}")
    names = d.get("feature_names_in_")
    if names is not None and (
        not isinstance(names, np.ndarray) or names.shape != (units[0],)
    ):
        _fail(f"feature_names_in_ does not name the {units[0]} features")
    return units, dtype


def _check_activations(est, units):
    try:
        hidden = hidden_activations(est.activation, len(units) - 2)
    except (TypeError, ValueError) as e:
        _fail(f"activation {est.activation!r} does not fit the network: {e}")
    unknown = [a for a in hidden if not (isinstance(a, str) and a in _HIDDEN)]
    if unknown:
        _fail(f"the hidden activation {unknown[0]!r} is unknown")
    out = est.__dict__["out_activation_"]
    if is_classifier(est):
        losses, allowed = ("log_loss",), set(_OUTPUTS.values())
    else:
        losses, allowed = tuple(_REGRESSOR_OUTPUTS), set(_REGRESSOR_OUTPUTS.values())
    if not (isinstance(est.loss, str) and est.loss in losses):
        _fail(f"the loss {est.loss!r} is not one of {list(losses)}")
    if not is_classifier(est):
        _check_loss_parameters(est)
    if not (isinstance(out, str) and out in allowed):
        _fail(f"out_activation_ {out!r} is not one of {sorted(allowed)}")


def _check_loss_parameters(est):
    """The regressor's huber_delta and quantile: valid values, each with its
    own loss only, the quantile present with loss='quantile' (a model saved
    by a fastbp without them has neither: None, as the defaults)."""
    delta = getattr(est, "huber_delta", None)
    quantile = getattr(est, "quantile", None)
    if delta is not None and not (isinstance(delta, Real) and delta > 0):
        _fail(f"huber_delta {delta!r} is not a float > 0 or None")
    if quantile is not None and not (isinstance(quantile, Real)
                                     and 0 < quantile < 1):
        _fail(f"quantile {quantile!r} is not a float in (0, 1) or None")
    if delta is not None and est.loss != "huber":
        _fail(f"huber_delta is set but the loss is {est.loss!r}")
    if quantile is not None and est.loss != "quantile":
        _fail(f"quantile is set but the loss is {est.loss!r}")
    if quantile is None and est.loss == "quantile":
        _fail("the loss is 'quantile' but quantile is None")


def _check_classes(d, n_outputs, out):
    classes = d.get("classes_")
    binarizer = d.get("_label_binarizer")
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or not len(classes):
        _fail("classes_ is not a non-empty 1-D array")
    y_type = getattr(binarizer, "y_type_", None)
    if y_type not in _OUTPUTS:
        _fail("the label binarizer (_label_binarizer) is missing or unfitted")
    known = getattr(binarizer, "classes_", None)
    if not (isinstance(known, np.ndarray) and known.shape == classes.shape
            and np.array_equal(known, classes)):
        _fail("classes_ differs from the label binarizer's classes")
    expected = 1 if y_type == "binary" else len(classes)
    if y_type == "binary" and len(classes) > 2:
        _fail(f"{len(classes)} classes but binary targets")
    if n_outputs != expected:
        _fail(f"n_outputs_ is {n_outputs} but {len(classes)} classes "
              f"({y_type} targets) need {expected} outputs")
    if out != _OUTPUTS[y_type]:
        _fail(f"out_activation_ is {out!r} but {y_type} targets need "
              f"{_OUTPUTS[y_type]!r}")


def _check_batch_norm(d, units, dtype):
    """The number of batch-norm parameters (scales and shifts)."""
    present = [d.get(name) is not None for name in _BATCH_NORM]
    if not any(present):
        return 0
    if not all(present):
        missing = [n for n, p in zip(_BATCH_NORM, present, strict=True) if not p]
        _fail(f"batch normalization is fitted but {missing[0]} is missing")
    widths = units[1:-1]
    for name in _BATCH_NORM:
        # A fit on huge values may leave infinite running statistics.
        running = name in ("batch_norm_mean_", "batch_norm_var_")
        arrays = _arrays(d, name, 1, dtype, widths, finite=not running)
        if name == "batch_norm_var_" and any((a < 0).any() for a in arrays):
            _fail("batch_norm_var_ holds negative variances")
    return bn_sizes(units, True)[0]


def _check_progress(d, n_params, dtype):
    for name in ("t_", "n_iter_"):
        if name in d and not _is_int(d[name]):
            _fail(f"{name} is {d[name]!r}, not a non-negative integer")
    optimizer = d.get("_optimizer")
    if optimizer is not None:
        problem = Optimizer.problem(optimizer, n_params, dtype)
        if problem is not None:
            _fail(problem)


def check_fitted_state(est):
    """Raise a ValueError naming what is inconsistent in est's fitted state.

    Checks: coefs_ and intercepts_ are lists of 2-D and 1-D float arrays of
    one dtype, finite (as fit leaves them), whose shapes chain from n_features_in_ to n_outputs_;
    n_layers_ matches; the hidden activations, the loss and out_activation_
    are known and fit the estimator; a classifier's classes_ agree with its
    label binarizer and n_outputs_ (1 for binary targets, one per class
    otherwise); the batch-norm scales, shifts and running statistics have
    each hidden layer's width; the optimizer state fits its solver and the
    parameter count; t_ and n_iter_ are non-negative integers. An unfitted
    estimator (none of the fitted attributes) passes.
    """
    d = est.__dict__
    present = [name in d for name in _CORE]
    if not any(present):
        return
    try:
        if not all(present):
            missing = [n for n, p in zip(_CORE, present, strict=True) if not p]
            _fail(f"{missing[0]} is missing")
        units, dtype = _check_layers(d)
        _check_activations(est, units)
        if is_classifier(est):
            _check_classes(d, units[-1], d["out_activation_"])
        n_params = param_offsets(units)[2] + _check_batch_norm(d, units, dtype)
        _check_progress(d, n_params, dtype)
    except _Inconsistent as e:
        raise ValueError(
            f"This {type(est).__name__}'s fitted state is inconsistent: {e}. "
            "It does not describe one network (a damaged or edited model file, "
            "or edited attributes); refit the estimator or load an intact model."
        ) from None


def _snapshot(est):
    return snapshot(est.__dict__, _WATCHED, _N_CONTAINERS)


def ensure_checked(est):
    """check_fitted_state(est) unless its state is the one last checked.

    Returns that state's memo: a dict for what callers derive from the
    state (the Model record, plans), empty whenever the state changed.
    """
    now = _snapshot(est)
    last = _checked.get(id(est))
    if last is not None and last[0]() is est and same(now, last[1]):
        return last[2]
    check_fitted_state(est)
    return _remember(est, now)


def trust(est):
    """Record est's current state as checked (fit has just built it)."""
    _remember(est, _snapshot(est))


def _remember(est, snapshot):
    key = id(est)

    def forget(ref):  # est is gone
        entry = _checked.get(key)
        if entry is not None and entry[0] is ref:
            _checked.pop(key, None)

    memo = {}
    _checked[key] = weakref.ref(est, forget), snapshot, memo
    return memo
