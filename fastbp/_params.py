"""Every rule the estimators' parameters follow, in one place.

``check_params`` checks each parameter on its own (scikit-learn's messages,
``InvalidParameterError``); ``fit_settings`` then reads them once into the
record a fit runs on and checks the rules that tie several together.
"""

from dataclasses import make_dataclass
from functools import cache
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import InvalidParameterError

from fastbp._backend import BACKENDS
from fastbp._network import hidden_activations, hidden_dropout
from fastbp._families import HIDDEN_ACTIVATIONS, LOSSES, REGRESSION_LOSSES, SOLVER
from fastbp._schedules import SCHEDULES

STOCHASTIC_SOLVERS = tuple(SOLVER)


def _interval(lo, hi, closed, integral=False):
    """A check that a number lies in an interval; returns (check, text)."""
    kind = Integral if integral else Real

    def check(v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, kind):
            return False
        above = v >= lo if closed in ("left", "both") else v > lo
        below = v <= hi if closed in ("right", "both") else v < hi
        return above and below

    left = "[" if closed in ("left", "both") else "("
    right = "]" if closed in ("right", "both") else ")"
    what = "an int" if integral else "a float"
    return check, f"{what} in the range {left}{lo}, {hi}{right}"


def _options(*values):
    def check(v):
        return isinstance(v, str) and v in values

    return check, "a str among {%s}" % ", ".join(repr(v) for v in sorted(values))


def _boolean():
    return (lambda v: isinstance(v, (bool, np.bool_))), "an instance of 'bool'"


def _any_of(*rules):
    def check(v):
        return any(c(v) for c, _ in rules)

    return check, " or ".join(text for _, text in rules)


def _one_or_per_layer(rule):
    """The rule, or a list or tuple of values each following it."""
    check, text = rule

    def check_all(v):
        if isinstance(v, (list, tuple)):
            return len(v) > 0 and all(check(x) for x in v)
        return check(v)

    return check_all, (
        f"{text}, or a non-empty list or tuple of them (one per hidden layer)"
    )


# From the loss table: the loss parameters, each read by one loss only
# (fastbp._state.loss_param), and the losses without curvature almost
# everywhere, which newton cannot use.
_LOSS_OF_PARAMETER = {loss.parameter[0]: loss.name for loss in LOSSES
                      if loss.parameter}
_PIECEWISE_LINEAR = tuple(loss.name for loss in LOSSES if not loss.has_curvature)
_INF = float("inf")
PARAMETER_RULES = {
    "hidden_layer_sizes": (
        lambda v: isinstance(v, Integral) and not isinstance(v, bool) and v >= 1
        or hasattr(v, "__iter__") and not isinstance(v, str),
        "an array-like or an int in the range [1, inf)",
    ),
    "activation": _one_or_per_layer(_options(*HIDDEN_ACTIVATIONS)),
    "solver": _options("lbfgs", "newton", *SOLVER),
    "alpha": _interval(0.0, _INF, "left"),
    "batch_size": _any_of(_options("auto"), _interval(1, _INF, "left", True)),
    "learning_rate": _any_of(
        _options(*SCHEDULES), (callable, "a callable (epoch, lr) -> lr")
    ),
    "learning_rate_init": _interval(0.0, _INF, "neither"),
    "power_t": _interval(0.0, _INF, "left"),
    "max_iter": _interval(1, _INF, "left", True),
    "shuffle": _boolean(),
    "random_state": (
        lambda v: v is None or isinstance(v, np.random.RandomState)
        or isinstance(v, Integral) and not isinstance(v, bool)
        and 0 <= v <= 2**32 - 1,
        "an int in the range [0, 4294967295], a numpy.random.RandomState "
        "instance or None",
    ),
    "tol": _interval(0.0, _INF, "left"),
    "verbose": (
        lambda v: isinstance(v, (bool, np.bool_))
        or isinstance(v, Integral) and v >= 0,
        "an int in the range [0, inf) or an instance of 'bool'",
    ),
    "warm_start": _boolean(),
    "momentum": _interval(0.0, 1.0, "both"),
    "nesterovs_momentum": _boolean(),
    "early_stopping": _boolean(),
    "validation_fraction": _interval(0.0, 1.0, "left"),
    "beta_1": _interval(0.0, 1.0, "left"),
    "beta_2": _interval(0.0, 1.0, "left"),
    "epsilon": _interval(0.0, _INF, "neither"),
    "n_iter_no_change": _any_of(
        _interval(1, _INF, "left", True), ((lambda v: v == np.inf), "inf")
    ),
    "max_fun": _interval(1, _INF, "left", True),
    "rho": _interval(0.0, 1.0, "left"),
    "weight_decay": _interval(0.0, _INF, "left"),
    "lr_step_size": _interval(1, _INF, "left", True),
    "lr_gamma": _interval(0.0, 1.0, "right"),
    "lr_min": _interval(0.0, _INF, "left"),
    "lr_cycle": _any_of(((lambda v: v is None), "None"),
                        _interval(1, _INF, "left", True)),
    "lr_cycle_mult": _interval(1, _INF, "left", True),
    "warmup_epochs": _interval(0, _INF, "left", True),
    "clip_norm": _any_of(((lambda v: v is None), "None"),
                         _interval(0.0, _INF, "neither")),
    "clip_value": _any_of(((lambda v: v is None), "None"),
                          _interval(0.0, _INF, "neither")),
    "backend": _options(*BACKENDS),
    "n_jobs": _any_of(((lambda v: v is None), "None"),
                      ((lambda v: isinstance(v, Integral) and not isinstance(
                          v, (bool, np.bool_)) and v != 0), "an int other than 0")),
    "l1": _interval(0.0, _INF, "left"),
    "early_stopping_metric": _options("score", "loss"),
    "restore_best_weights": _boolean(),
    "dropout": _one_or_per_layer(_interval(0.0, 1.0, "left")),
    "class_weight": (
        lambda v: v is None or isinstance(v, dict) or v == "balanced",
        "a dict, a str among {'balanced'} or None",
    ),
    "loss": _options(*REGRESSION_LOSSES),
    "huber_delta": _any_of(((lambda v: v is None), "None"),
                           _interval(0.0, _INF, "neither")),
    "quantile": _any_of(((lambda v: v is None), "None"),
                        _interval(0.0, 1.0, "neither")),
    "batch_norm": _boolean(),
}


def check_params(estimator, params=None):
    """Raise InvalidParameterError (a ValueError and a TypeError, as in
    scikit-learn) naming a bad parameter (params: get_params' dict, if read)."""
    if params is None:
        params = estimator.get_params(deep=False)
    for name, value in params.items():
        check, allowed = PARAMETER_RULES[name]
        if not check(value):
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be "
                f"{allowed}. Got {value!r} instead."
            )


def hidden_sizes(hidden_layer_sizes):
    """The hidden widths as a list of positive ints."""
    sizes = hidden_layer_sizes
    if not hasattr(sizes, "__iter__"):
        sizes = [sizes]
    sizes = list(sizes)
    if not all(isinstance(s, Integral) and not isinstance(s, bool) for s in sizes):
        raise ValueError(
            f"hidden_layer_sizes must hold integers, got {hidden_layer_sizes}."
        )
    if any(s <= 0 for s in sizes):
        raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
    return [int(s) for s in sizes]


@cache
def _param_names(cls):
    """The constructor's parameter names (scikit-learn's), once per class."""
    return tuple(cls._get_param_names())


# The record a fit runs on: every parameter of either estimator, then what
# a fit derives from them (the hidden widths, whether the solver is
# stochastic, whether the fit is partial_fit). Both estimators' fits read
# the same shape: a parameter the estimator lacks holds what it behaves as.
FitSettings = make_dataclass(
    "FitSettings", [*PARAMETER_RULES, "hidden", "stochastic", "incremental"],
    frozen=True,
)


def fit_settings(estimator, incremental=False, has_val_set=False):
    """The parameters of one fit, read once, with the rules between them checked.

    A ``FitSettings``: every constructor parameter under its own name (the
    classifier's ``loss`` is its class attribute, 'log_loss'; the
    regressor's ``class_weight`` is None), plus ``hidden`` (the widths),
    ``stochastic`` and ``incremental``. A fit reads nothing else of the
    estimator's parameters, so set_params during a fit cannot change it
    halfway.
    """
    # get_params(deep=False), without its inspect.signature on every call
    # (a quarter of a 100-row partial_fit's Python time).
    params = {name: getattr(estimator, name)
              for name in _param_names(type(estimator))}
    check_params(estimator, params)
    params = {name: getattr(estimator, name, None) for name in PARAMETER_RULES}
    params["batch_norm"] = bool(params["batch_norm"])
    s = FitSettings(**params, hidden=hidden_sizes(params["hidden_layer_sizes"]),
                    stochastic=params["solver"] in STOCHASTIC_SOLVERS,
                    incremental=incremental)
    hidden_activations(s.activation, len(s.hidden))  # checks the length
    _check_loss_parameters(s)
    if s.solver == "newton" and s.l1 > 0:
        raise ValueError(
            "solver='newton' needs a twice-differentiable objective, and the "
            "l1 penalty has no derivative at 0: use l1=0 with newton, or "
            "l1 with lbfgs or a stochastic solver."
        )
    if any(hidden_dropout(s.dropout, len(s.hidden))) and not s.stochastic:
        raise ValueError(
            "dropout needs a stochastic solver (not lbfgs or newton): it makes "
            "the loss random, which full-batch solvers cannot minimise."
        )
    if s.batch_norm and s.solver == "newton":
        raise ValueError(
            "batch_norm=True does not support solver='newton': its "
            "second-order terms ignore the normalization."
        )
    if has_val_set and not (s.early_stopping and s.stochastic):
        raise ValueError(
            "X_val and y_val are passed to fit while early_stopping is False "
            "or the solver is not stochastic; pass them with "
            "early_stopping=True and a stochastic solver."
        )
    if incremental and s.early_stopping:
        raise ValueError("partial_fit does not support early_stopping=True")
    if incremental and s.class_weight == "balanced":
        raise ValueError(
            "class_weight 'balanced' is not supported for partial_fit: the "
            "class frequencies of later batches are unknown. Pass a dict."
        )
    return s


def _check_loss_parameters(s):
    """The regressor's loss parameters: each set with its own loss only,
    the quantile required by loss='quantile'; newton needs curvature."""
    loss = s.loss
    for name, owner in _LOSS_OF_PARAMETER.items():
        if getattr(s, name) is not None and loss != owner:
            raise ValueError(
                f"{name}={getattr(s, name)!r} is a parameter of "
                f"loss={owner!r} only, but loss={loss!r}: leave {name}=None "
                f"or use loss={owner!r}."
            )
    if loss == "quantile" and s.quantile is None:
        raise ValueError(
            "loss='quantile' needs the quantile to fit: set quantile to a "
            "float in (0, 1), for example quantile=0.9 for the 90th "
            "percentile."
        )
    if loss in _PIECEWISE_LINEAR and s.solver == "newton":
        raise ValueError(
            f"solver='newton' needs curvature, and loss={loss!r} has none: "
            "its second derivative is zero wherever it exists, so Newton "
            "steps are undefined. Use solver='lbfgs' or a stochastic solver, "
            "or loss='huber' (curvature 1 within huber_delta)."
        )
