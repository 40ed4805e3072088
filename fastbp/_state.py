"""A fit's state as records, and how they map to the estimator's attributes.

``Model`` is the weights: one flat buffer (coefficients, intercepts, then
batch-norm scales and shifts), the layer widths, and the running batch-norm
statistics. ``Network`` is what the weights compute: activations and loss.
``History`` is the bookkeeping a stochastic fit carries from epoch to epoch
(curves, best values, patience); ``Optimizer`` the solver's state between
steps and between fits. A fit builds these records itself and the
estimator receives their ``attributes()`` in one commit, so a fit that fails
leaves the estimator as it was.
"""

import math
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np
from sklearn.externals import array_api_compat

import fastbp._array_api as _array_api

from fastbp._families import LOSSES
from fastbp._network import batch_norm_attributes, fitted_arrays, make_plan, pack
from fastbp._optimizers import STATE_ARRAYS


def _copy(a):
    """A copy of a NumPy or array-API array."""
    if isinstance(a, np.ndarray):
        return a.copy()
    return array_api_compat.array_namespace(a).asarray(a, copy=True)


_BN_PARAMS = ("batch_norm_scale_", "batch_norm_shift_")
_BN_STATS = ("batch_norm_mean_", "batch_norm_var_")


def _interleaved(attrs, names):
    """Two per-layer list attributes interleaved layer by layer, in their
    order in a buffer; [] without batch norm."""
    first = attrs.get(names[0])
    if first is None:
        return []
    return [a for pair in zip(first, attrs[names[1]], strict=True) for a in pair]


@dataclass
class Model:
    """The weights of a network: every fitted array is a view of these.

    flat : ndarray of shape (n_params,)
        Coefficients, intercepts, then batch-norm scales and shifts.
    units : tuple of int
        Layer widths, input first.
    running : ndarray of shape (n_running,) or None
        Running batch-norm means and variances; None without batch norm.
    """

    flat: np.ndarray
    units: tuple
    running: np.ndarray = None

    @property
    def batch_norm(self):
        return self.running is not None

    def copy(self):
        return Model(_copy(self.flat), self.units,
                     None if self.running is None else _copy(self.running))

    def attributes(self):
        """coefs_, intercepts_ and batch_norm_*_ as views of this record
        (in an array-API namespace, arrays read from it: a reshape there
        need not be a view)."""
        if _array_api.foreign(self.flat):
            xp = array_api_compat.array_namespace(self.flat)
            coefs, intercepts = _array_api.layers(xp, self.flat, self.units)
            bn = dict.fromkeys(_BN_PARAMS + _BN_STATS)
            if self.running is not None:  # slices only: views anywhere
                bn = dict(zip(_BN_PARAMS + _BN_STATS, batch_norm_attributes(
                    self.flat, self.running, self.units)))
            return {"coefs_": coefs, "intercepts_": intercepts, **bn,
                    "_model": self}
        return {**fitted_arrays(self.flat, self.units, self.running),
                "_model": self}

    @classmethod
    def of(cls, attrs):
        """The model behind fitted attributes (an estimator's ``__dict__``).

        The record they view, as long as every array still is a view of it
        (in-place edits of coefs_[i] are edits of the buffer); if an entry
        was replaced by another array, a new record packed from the lists.
        """
        coefs, intercepts = attrs["coefs_"], attrs["intercepts_"]
        params = _interleaved(attrs, _BN_PARAMS)
        if _array_api.foreign(coefs[0]):
            # Packed anew from the lists every time: whether they still view
            # the record's buffer is not something the array API tells.
            units = (coefs[0].shape[0], *(c.shape[1] for c in coefs))
            stats = _interleaved(attrs, _BN_STATS)
            return cls(_array_api.pack(coefs, intercepts, params),
                       units, _array_api.pack(stats) if stats else None)
        stats = _interleaved(attrs, _BN_STATS)
        model = attrs.get("_model")
        if model is not None and all(
            a.base is model.flat for a in coefs + intercepts + params
        ) and (model.running is None) == (not stats) and all(
            a.base is model.running for a in stats
        ):
            return model
        dtype = coefs[0].dtype
        flat = np.concatenate([pack(coefs, intercepts, dtype)]
                              + [np.ravel(a) for a in params]).astype(dtype, copy=False)
        running = None
        if params:
            running = np.concatenate([np.empty(0, dtype)]
                                     + [np.ravel(a) for a in stats]
                                     ).astype(dtype, copy=False)
        units = (coefs[0].shape[0], *(c.shape[1] for c in coefs))
        return cls(flat, units, running)


class Network(NamedTuple):
    """What a model's weights compute: hidden activation(s), output
    activation and the loss the output layer's delta belongs to, with its
    parameter (the Huber delta or the quantile; 0 for the other losses)."""

    activation: object
    out_activation: str
    loss: str
    loss_param: float = 0.0

    def plan(self, units, rows, gather=False, dropout=0.0, batch_norm=False):
        """The engine's layout for passes of up to rows rows."""
        return make_plan(units, self.activation, self.out_activation, self.loss,
                         rows, gather, dropout, batch_norm, self.loss_param)


def loss_name(out_activation, loss):
    """The engine's loss for an output activation and the loss parameter."""
    return "binary_log_loss" if out_activation == "logistic" else loss


# The regressor's parameter each loss reads, with its value when None.
LOSS_PARAMETERS = {loss.name: loss.parameter for loss in LOSSES if loss.parameter}


def loss_param(params):
    """The engine's loss_param for settings or an estimator (anything with
    loss, huber_delta and quantile attributes): the Huber delta or the
    quantile of those losses, 0 for the others."""
    name, default = LOSS_PARAMETERS.get(getattr(params, "loss", None),
                                        (None, 0.0))
    if name is None:
        return 0.0
    value = getattr(params, name, None)
    return float(default if value is None else value)


# History fields and the estimator attributes they become.
_HISTORY_NAMES = {
    "n_iter": "n_iter_", "t": "t_", "loss": "loss_",
    "loss_curve": "loss_curve_", "learning_rate_curve": "learning_rate_curve_",
    "validation_scores": "validation_scores_",
    "validation_loss_curve": "validation_loss_curve_",
    "best_loss": "best_loss_", "best_validation_score": "best_validation_score_",
    "best_validation_loss": "best_validation_loss_",
    "no_improvement_count": "_no_improvement_count",
}
# What a full-batch fit writes (newton also its loss_curve_).
_FULL_BATCH_FIELDS = ("n_iter", "t", "loss")


@dataclass
class History:
    """Iterations, samples seen, losses, scores and patience of a fit."""

    n_iter: int = 0
    t: int = 0
    loss: float = math.nan
    loss_curve: list = None
    learning_rate_curve: list = None
    validation_scores: list = None
    validation_loss_curve: list = None
    best_loss: float = None
    best_validation_score: float = None
    best_validation_loss: float = None
    no_improvement_count: int = 0
    # The estimator attributes this history writes when committed.
    writes: tuple = field(default=tuple(_HISTORY_NAMES), repr=False)

    @classmethod
    def start(cls, attrs, settings, first_pass):
        """The history a fit starts from: new on a first pass, else continued
        from the estimator's attributes (lists copied, never shared)."""
        s = settings
        old = {f: attrs.get(a) for f, a in _HISTORY_NAMES.items()}
        if not s.stochastic:
            h = cls(n_iter=old["n_iter"] or 0, t=0 if first_pass else old["t"] or 0,
                    writes=_FULL_BATCH_FIELDS)
            if s.solver == "newton":
                h.loss_curve, h.writes = [], _FULL_BATCH_FIELDS + ("loss_curve",)
            return h
        if first_pass:
            h = cls()
        else:
            h = cls(n_iter=old["n_iter"], t=old["t"], loss=old["loss"])
            h.loss_curve = list(old["loss_curve"] or [])
            h.learning_rate_curve = list(old["learning_rate_curve"] or [])
        h.loss_curve = h.loss_curve if h.loss_curve is not None else []
        h.learning_rate_curve = (h.learning_rate_curve
                                 if h.learning_rate_curve is not None else [])
        if s.early_stopping:
            h.validation_scores = list(
                (old["validation_scores"] or []) if not first_pass else [])
            h.validation_loss_curve = list(
                (old["validation_loss_curve"] or []) if not first_pass else [])
        if not first_pass and s.incremental and "_no_improvement_count" in attrs:
            h.no_improvement_count = old["no_improvement_count"]
            h.best_loss = old["best_loss"]
            h.best_validation_score = old["best_validation_score"]
            h.best_validation_loss = old["best_validation_loss"]
            return h
        # A new (warm-started) fit starts its patience afresh, unlike
        # scikit-learn, whose old best score could stop it at once.
        if s.early_stopping:
            h.best_validation_score, h.best_validation_loss = -np.inf, np.inf
        else:
            h.best_loss = np.inf
        return h

    def attributes(self):
        return {_HISTORY_NAMES[f.name]: getattr(self, f.name) for f in fields(self)
                if f.name in self.writes}


@dataclass
class Optimizer:
    """A stochastic solver's state: its flat state arrays, the learning rate
    the schedule reached, the steps taken (counted by the Adam family) and
    the epochs run. The estimator keeps it as ``record()``'s plain dict
    (``_optimizer``), so pickle and skops load it with no type of fastbp's
    to trust; ``problem`` checks such a record entry by entry on load."""

    solver: str
    state: np.ndarray
    learning_rate: float
    step: int = 0
    epoch: int = 0

    @classmethod
    def new(cls, solver, n_params, dtype, learning_rate):
        """The state before the solver's first step."""
        return cls(solver, np.zeros(STATE_ARRAYS[solver] * n_params, dtype=dtype),
                   float(learning_rate))

    @classmethod
    def of(cls, record):
        """A copy of a checked record (a failed fit leaves it as it was)."""
        return cls(**dict(record, state=_copy(record["state"])))

    def record(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def problem(cls, record, n_params, dtype):
        """What is wrong with a saved record for n_params parameters of
        dtype (None when nothing): a missing, extra or mistyped entry."""
        if type(record) is not dict:
            return f"the optimizer state (_optimizer) is a {type(record).__name__}, " \
                "not a dict"
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in record]
        extra = sorted(map(repr, set(record) - set(names)))
        if missing or extra:
            return (f"the optimizer state (_optimizer) lacks {missing}" if missing
                    else f"the optimizer state (_optimizer) has unknown entries "
                    f"{', '.join(extra)}")
        solver, state = record["solver"], record["state"]
        if not (isinstance(solver, str) and solver in STATE_ARRAYS):
            return f"the optimizer state is for an unknown solver {solver!r}"
        size = STATE_ARRAYS[solver] * n_params
        if not (isinstance(state, np.ndarray) and state.shape == (size,)
                and state.dtype == dtype):
            what = (f"shape {state.shape} and dtype {state.dtype}"
                    if isinstance(state, np.ndarray) else type(state).__name__)
            return (f"the {solver} optimizer state has {what}; {n_params} "
                    f"parameters need shape ({size},) and dtype {dtype}")
        for key in ("step", "epoch"):
            v = record[key]
            if not (isinstance(v, (int, np.integer)) and not isinstance(
                    v, (bool, np.bool_)) and v >= 0):
                return f"the optimizer's {key} is {v!r}, not a non-negative integer"
        rate = record["learning_rate"]
        if not (isinstance(rate, (float, int, np.floating, np.integer))
                and not isinstance(rate, (bool, np.bool_))
                and math.isfinite(rate) and rate > 0):
            return f"the optimizer's learning rate is {rate!r}, not a positive float"
        return None
