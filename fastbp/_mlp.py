"""Drop-in replacements for scikit-learn's MLPClassifier and MLPRegressor.

The estimators validate, encode labels and drive training once per epoch;
the epoch itself (every minibatch) runs in ``fastbp._epoch`` with the GIL
released, or in its NumPy twin ``fastbp._reference`` with backend="numpy".
"""

import warnings
from contextlib import nullcontext
from itertools import pairwise
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
)
from sklearn.callback import CallbackSupportMixin, with_callbacks
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from fastbp import _epoch, _kernels, _reference
from fastbp._callbacks import FitTasks
from fastbp._network import (
    fitted_arrays,
    glorot_init,
    hidden_activations,
    hidden_dropout,
    init_batch_norm,
    make_plan,
    pack,
)
from fastbp._optimizers import SOLVERS, STATE_ARRAYS
from fastbp._schedules import SCHEDULES, epoch_learning_rate
from fastbp._second_order import SecondOrderMixin
from fastbp._settings import Settings
from fastbp._threads import blas_one_thread, effective_n_threads
from fastbp._version import __version__

_STOCHASTIC_SOLVERS = tuple(SOLVERS)
# Attributes sklearn.callback keeps on the estimator for the length of a fit.
_CALLBACK_STATE = ("_callback_fit_ctx", "_skl_callbacks_to_teardown")
_BACKENDS = {"cython": _epoch, "numpy": _reference}
# Dropout seeds are drawn from [0, _SEED_END).
_SEED_END = np.iinfo(np.int64).max
# Rows per forward pass at predict time: bounds the workspace, keeps BLAS busy.
_PREDICT_ROWS = 1024
# Multiply-adds below which every product of a pass is so small that
# OpenBLAS stays on one thread by itself: no need to hold it there.
_BLAS_TINY = 1 << 16


def _blas_threads(rows, units):
    """BLAS on one thread for a pass of rows-row products: fastbp's own
    threads (n_jobs) split the rows, each calling BLAS single-threaded, so
    the result never depends on BLAS's threading. Tiny passes skip it."""
    if rows * max(units) ** 2 < _BLAS_TINY:  # bounds every product
        return nullcontext()
    return blas_one_thread()


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


_HIDDEN_ACTIVATIONS = (
    "identity", "logistic", "tanh", "relu",
    "leaky_relu", "elu", "gelu", "softplus", "silu", "softsign",
)
_INF = float("inf")
_PARAMETER_RULES = {
    "hidden_layer_sizes": (
        lambda v: isinstance(v, Integral) and not isinstance(v, bool) and v >= 1
        or hasattr(v, "__iter__") and not isinstance(v, str),
        "an array-like or an int in the range [1, inf)",
    ),
    "activation": _one_or_per_layer(_options(*_HIDDEN_ACTIVATIONS)),
    "solver": _options("lbfgs", "newton", *SOLVERS),
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
    "backend": _options(*_BACKENDS),
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
    "loss": _options("squared_error", "poisson"),
    "batch_norm": _boolean(),
}


class FastbpVersionWarning(UserWarning):
    """A model file written by another fastbp version was loaded."""


class _BaseMLP(SecondOrderMixin, CallbackSupportMixin,
               ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared machinery of MLPClassifier and MLPRegressor.

    Subclasses define ``_validate_input``, ``_output_activation``,
    ``_start_partial_fit``, ``_decode`` and ``_score_function``.
    """

    # ------------------------------------------------------------------
    # parameters

    def _check_params(self):
        """Raise InvalidParameterError (a ValueError and a TypeError, as in
        scikit-learn) naming a bad parameter."""
        for name, value in self.get_params(deep=False).items():
            check, allowed = _PARAMETER_RULES[name]
            if not check(value):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be "
                    f"{allowed}. Got {value!r} instead."
                )

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        if not all(
            isinstance(s, Integral) and not isinstance(s, bool) for s in sizes
        ):
            raise ValueError(
                f"hidden_layer_sizes must hold integers, got {self.hidden_layer_sizes}."
            )
        if any(s <= 0 for s in sizes):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
        return [int(s) for s in sizes]

    # ------------------------------------------------------------------
    # data

    def _backend(self):
        return _BACKENDS[self.backend]

    @staticmethod
    def _as_kernel_input(X, dtype):
        """(dense, csr) pair the kernels take.

        For sparse X, dense is an empty (0, n_features) array: it carries the
        dtype the compiled functions dispatch on.
        """
        if sp.issparse(X):
            X = sp.csr_matrix(X, dtype=dtype)  # validate_data checked finiteness
            csr = (
                np.ascontiguousarray(X.data, dtype=dtype),
                np.ascontiguousarray(X.indices, dtype=np.intp),
                np.ascontiguousarray(X.indptr, dtype=np.intp),
            )
            return np.empty((0, X.shape[1]), dtype=dtype), csr
        return np.ascontiguousarray(X, dtype=dtype), None

    def _check_sample_weight(self, sample_weight, n_samples, dtype):
        if sample_weight is None:
            return None
        if isinstance(sample_weight, Real):
            sample_weight = np.full(n_samples, sample_weight, dtype=dtype)
        sample_weight = check_array(
            sample_weight, ensure_2d=False, dtype=dtype, input_name="sample_weight"
        )
        if sample_weight.ndim != 1:
            raise ValueError(
                "Sample weights must be 1D array or scalar, got "
                f"{sample_weight.ndim}D array. Expected either a scalar value "
                f"or a 1D array of length {n_samples}."
            )
        if sample_weight.shape != (n_samples,):
            raise ValueError(
                f"sample_weight.shape == {sample_weight.shape}, "
                f"expected {(n_samples,)}!"
            )
        if np.any(sample_weight < 0):
            raise ValueError("Negative values in data passed to `sample_weight`.")
        if not np.any(sample_weight > 0):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return np.ascontiguousarray(sample_weight)

    # ------------------------------------------------------------------
    # fitting

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in
            regression).

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        X_val : {array-like, sparse matrix} of shape (n_val, n_features), \
                default=None
            A validation set for early stopping, used instead of holding out
            validation_fraction of X (which then all trains). Needs
            early_stopping=True, as in HistGradientBoosting. In a Pipeline,
            ``Pipeline(..., transform_input=["X_val"])`` transforms it as X.
            Not in scikit-learn's MLP.

        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Targets of X_val.

        sample_weight_val : array-like of shape (n_val,), default=None
            Sample weights of X_val (validation score and loss).

        Returns
        -------
        self : object
            Returns a trained MLP model.
        """
        val_set = None
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise ValueError("X_val and y_val must be passed together.")
            val_set = (X_val, y_val, sample_weight_val)
        elif sample_weight_val is not None:
            raise ValueError("sample_weight_val is passed without X_val and y_val.")
        return self._fit(X, y, sample_weight, incremental=False, val_set=val_set)

    @with_callbacks
    def _fit(self, X, y, sample_weight, incremental, classes=None, val_set=None):
        self._check_params()
        # Train on copies and commit at the end: a failed fit leaves the
        # previous model exactly as it was.
        before = dict(self.__dict__)
        try:
            if incremental:
                self._start_partial_fit(y, classes)
            self._fit_committed(X, y, sample_weight, incremental, val_set)
        except BaseException:
            # The callback context stays until with_callbacks tears it down.
            running = {
                k: v for k, v in self.__dict__.items() if k in _CALLBACK_STATE
            }
            self.__dict__.clear()
            self.__dict__.update(before, **running)
            raise
        return self

    def _fit_committed(self, X, y, sample_weight, incremental, val_set=None):
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (
            not self.warm_start and not incremental
        )
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        dtype = X.dtype if first_pass else self.coefs_[0].dtype
        n_samples, n_features = X.shape
        sample_weight = self._check_sample_weight(sample_weight, n_samples, dtype)
        sample_weight = self._weigh_classes(Y, sample_weight, incremental, dtype)
        units = [n_features] + hidden + [Y.shape[1]]
        hidden_activations(self.activation, len(hidden))  # checks the length
        if self.solver == "newton" and self.l1 > 0:
            raise ValueError(
                "solver='newton' needs a twice-differentiable objective, and the "
                "l1 penalty has no derivative at 0: use l1=0 with newton, or "
                "l1 with lbfgs or a stochastic solver."
            )
        if any(hidden_dropout(self.dropout, len(hidden))) and (
            self.solver not in _STOCHASTIC_SOLVERS
        ):
            raise ValueError(
                "dropout needs a stochastic solver (not lbfgs or newton): it makes "
                "the loss random, which full-batch solvers cannot minimise."
            )
        batch_norm = bool(self.batch_norm)
        if batch_norm and self.solver == "newton":
            raise ValueError(
                "batch_norm=True does not support solver='newton': its "
                "second-order terms ignore the normalization."
            )
        if val_set is not None:
            val_set = self._validate_val_set(*val_set, Y.shape[1], dtype)
        random_state = check_random_state(self.random_state)

        if first_pass:
            self.n_iter_ = 0
            self.t_ = 0
            self.n_outputs_ = Y.shape[1]
            self.n_layers_ = len(units)
            self.out_activation_ = self._output_activation(Y)
            flat = glorot_init(units, self.activation, random_state, dtype)
            running = None
            if batch_norm:
                bn_params, running = init_batch_norm(units, dtype)
                flat = np.concatenate([flat, bn_params])
            if self.solver in _STOCHASTIC_SOLVERS:
                self.loss_curve_ = []
                self.learning_rate_curve_ = []
                self._no_improvement_count = 0
                self.validation_loss_curve_ = [] if self.early_stopping else None
                if self.early_stopping:
                    self.validation_scores_ = []
                    self.best_validation_score_ = -np.inf
                    self.best_validation_loss_ = np.inf
                    self.best_loss_ = None
                else:
                    self.best_loss_ = np.inf
                    self.validation_scores_ = None
                    self.best_validation_score_ = None
                    self.best_validation_loss_ = None
        else:
            old_units = self._fitted_units()
            if old_units != units:
                raise ValueError(
                    f"The network has layer sizes {old_units} but this fit needs "
                    f"{units}; refit without warm_start to change the architecture."
                )
            if self._fitted_batch_norm() != batch_norm:
                raise ValueError(
                    f"The network was fitted with batch_norm="
                    f"{self._fitted_batch_norm()}; refit without warm_start to "
                    f"change it."
                )
            flat = self._packed(dtype)
            running = self._running_stats()
            if running is not None:
                running = running.astype(dtype)  # a copy: a failed fit keeps it
            if self.solver in _STOCHASTIC_SOLVERS:
                self._start_bookkeeping(incremental)

        Y = np.ascontiguousarray(Y, dtype=dtype)
        stochastic = self.solver in _STOCHASTIC_SOLVERS
        # Full-batch solvers get one extra, empty subtask: scipy reports an
        # iteration after it ran.
        tasks = FitTasks(
            self, X, y, sample_weight,
            (1 if incremental else self.max_iter) if stochastic else self.max_iter + 1,
            "epoch" if stochastic else "iteration",
        )
        if stochastic:
            with _blas_threads(self._batch_size(n_samples, warn=False), units):
                self._fit_stochastic(
                    X, Y, sample_weight, units, flat, random_state, incremental,
                    tasks, val_set, running,
                )
        else:
            with _blas_threads(n_samples, units):
                self._fit_full_batch(X, Y, sample_weight, units, flat, tasks,
                                     running)
        self._set_params_flat(flat, units, running)
        tasks.finish()

    def _weigh_classes(self, Y, sample_weight, incremental, dtype):
        """sample_weight times the class weights (classifier only)."""
        return sample_weight

    def _validate_val_set(self, X_val, y_val, sample_weight_val, n_outputs, dtype):
        """A user's validation set as the triple the early-stopping code takes."""
        if not self.early_stopping or self.solver not in _STOCHASTIC_SOLVERS:
            raise ValueError(
                "X_val and y_val are passed to fit while early_stopping is False "
                "or the solver is not stochastic; pass them with "
                "early_stopping=True and a stochastic solver."
            )
        X_val = validate_data(
            self, X_val, accept_sparse=["csr", "csc"], reset=False,
            dtype=(np.float64, np.float32),
        )
        Y_val = self._encode_targets(y_val)
        Y_val = Y_val.reshape(Y_val.shape[0], -1)
        if Y_val.shape != (X_val.shape[0], n_outputs):
            raise ValueError(
                f"y_val must have shape ({X_val.shape[0]}, {n_outputs}) or "
                f"({X_val.shape[0]},) like y, got {np.shape(y_val)}."
            )
        sw_val = self._check_sample_weight(sample_weight_val, X_val.shape[0], dtype)
        return X_val, Y_val, sw_val

    def _start_bookkeeping(self, incremental):
        """Continue or restart the history a warm or incremental fit builds on."""
        # Histories live on; lists are copied so a failed fit cannot touch them.
        self.loss_curve_ = list(getattr(self, "loss_curve_", None) or [])
        self.learning_rate_curve_ = list(
            getattr(self, "learning_rate_curve_", None) or []
        )
        if self.early_stopping:
            self.validation_scores_ = list(
                getattr(self, "validation_scores_", None) or []
            )
            self.validation_loss_curve_ = list(
                getattr(self, "validation_loss_curve_", None) or []
            )
        else:
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
        if incremental and hasattr(self, "_no_improvement_count"):
            return
        # A new (warm-started) fit starts its patience afresh, unlike
        # scikit-learn, whose old best score could stop it at once.
        self._no_improvement_count = 0
        if self.early_stopping:
            self.best_validation_score_ = -np.inf
            self.best_validation_loss_ = np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.best_validation_score_ = None
            self.best_validation_loss_ = None

    def _set_params_flat(self, flat, units, running=None):
        self._flat = flat
        self._bn_running = running
        self.__dict__.update(fitted_arrays(flat, units, running))

    def _fitted_batch_norm(self):
        return getattr(self, "batch_norm_scale_", None) is not None

    def _bn_parts(self, names=("batch_norm_scale_", "batch_norm_shift_")):
        """The arrays of two batch-norm attributes interleaved layer by layer,
        in their order in a buffer; [] without batch norm."""
        first = getattr(self, names[0], None)
        if first is None:
            return []
        second = getattr(self, names[1])
        return [a for pair in zip(first, second, strict=True) for a in pair]

    def _packed(self, dtype):
        """A new flat buffer from coefs_, intercepts_ and the batch-norm
        scales and shifts."""
        return np.concatenate(
            [pack(self.coefs_, self.intercepts_, dtype)]
            + [np.ravel(a) for a in self._bn_parts()]
        ).astype(dtype, copy=False)

    def _running_stats(self):
        """The buffer behind batch_norm_mean_ and batch_norm_var_ (a new one
        if they were replaced); None without batch norm."""
        if not self._fitted_batch_norm():
            return None
        parts = self._bn_parts(("batch_norm_mean_", "batch_norm_var_"))
        running = getattr(self, "_bn_running", None)
        if running is not None and all(a.base is running for a in parts):
            return running
        dtype = self.coefs_[0].dtype
        return np.concatenate([np.empty(0, dtype)] + [np.ravel(a) for a in parts]
                              ).astype(dtype, copy=False)

    def _loss_name(self):
        if self.out_activation_ == "logistic":
            return "binary_log_loss"
        return self.loss

    def _plan(self, units, rows, gather, dropout=0.0, batch_norm=None):
        # batch_norm None: as the fitted network.
        if batch_norm is None:
            batch_norm = self._fitted_batch_norm()
        return make_plan(
            units,
            self.activation,
            self.out_activation_,
            self._loss_name(),
            rows,
            gather,
            dropout,
            batch_norm,
        )

    def _batch_size(self, n_samples, warn=True):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples and warn:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than "
                "sample size. It is going to be clipped"
            )
        return int(np.clip(self.batch_size, 1, n_samples))

    def _new_optimizer(self, n_params, dtype):
        n_state = STATE_ARRAYS[self.solver] * n_params
        return {
            "solver": self.solver,
            "state": np.zeros(n_state, dtype=dtype),
            "learning_rate": float(self.learning_rate_init),
            "step": 0,
            "epoch": 0,
        }

    def _fit_stochastic(
        self, X, Y, sample_weight, units, flat, random_state, incremental,
        tasks, val_set=None, running=None,
    ):
        optimizer = getattr(self, "_optimizer", None)
        # Same widths and dtype as before are checked in _fit_committed, so a
        # kept state always fits flat.
        if not incremental or optimizer is None or optimizer["solver"] != self.solver:
            optimizer = self._new_optimizer(flat.size, flat.dtype)
        else:
            optimizer = dict(optimizer, state=optimizer["state"].copy())

        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        val = val_set
        if val is None and self.early_stopping:
            X, Y, sample_weight, val = self._split_validation(
                X, Y, sample_weight, random_state
            )
        if val is not None:
            # Encoded targets for the loss, decoded ones for the score.
            X_val, Y_val, sw_val = val
            Y_val = np.ascontiguousarray(Y_val, dtype=flat.dtype)
            val = (X_val, Y_val, self._decode(Y_val), sw_val)
        n_samples = X.shape[0]
        batch_size = self._batch_size(n_samples)
        X_dense, csr = self._as_kernel_input(X, flat.dtype)
        plan = self._plan(units, batch_size, gather=self.shuffle and csr is None,
                          dropout=self.dropout, batch_norm=running is not None)
        use_dropout = plan.drop.any()
        work = np.empty(plan.work_size, dtype=flat.dtype)
        grad = np.empty_like(flat)
        order = np.arange(n_samples, dtype=np.intp)
        keep_best = self.early_stopping or (
            self.restore_best_weights and not incremental
        )
        best = flat.copy() if keep_best else None
        best_running = running.copy() if keep_best and running is not None else None
        backend = self._backend()
        n_threads = effective_n_threads(self.n_jobs)

        self.n_iter_ = 0
        try:
            for _ in range(self.max_iter):
                tasks.begin(flat, units, running)
                if self.shuffle:
                    # sklearn.utils.shuffle's order (it permutes an arange
                    # with the same RandomState) at a sixth of its cost.
                    order = order[random_state.permutation(n_samples)]
                optimizer["learning_rate"] = epoch_learning_rate(
                    self, optimizer.get("epoch", 0), optimizer["learning_rate"]
                )
                seed = self._dropout_seed(random_state) if use_dropout else 0
                loss_sum, optimizer["step"] = backend.run_epoch(
                    plan, Settings.of(self, optimizer["learning_rate"], n_threads),
                    X_dense,
                    csr, Y, sample_weight, order if self.shuffle else None,
                    batch_size, flat, grad, work, optimizer["state"],
                    optimizer["step"], seed=seed, running=running,
                )
                self.n_iter_ += 1
                optimizer["epoch"] = optimizer.get("epoch", 0) + 1
                self.loss_ = loss_sum / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                self.learning_rate_curve_.append(optimizer["learning_rate"])
                if not (np.isfinite(self.loss_) and backend.all_finite(flat)):
                    self._diverged(optimizer["learning_rate"])
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                if (self._update_no_improvement_count(val, flat, units, running)
                        and keep_best):
                    best[:] = flat
                    if running is not None:
                        best_running[:] = running
                if tasks.end(flat, units, running):
                    break
                if self._no_improvement_count > self.n_iter_no_change:
                    if self._stop_or_slow_down(optimizer):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) "
                        "reached and the optimization hasn't converged yet."
                        % self.max_iter,
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt as interrupt:
            # The compiled epoch stops between minibatches and tells how far
            # Adam got; the weights are those of the last whole step.
            optimizer["step"] = getattr(interrupt, "step", optimizer["step"])
            warnings.warn("Training interrupted by user.")
            if not backend.all_finite(flat):
                raise ValueError(
                    "Training was interrupted and the weights are not finite; "
                    "the previous model is kept."
                ) from None
        if keep_best:
            flat[:] = best
            if running is not None:
                running[:] = best_running
        self._optimizer = optimizer

    def _dropout_seed(self, random_state):
        """This epoch's dropout seed, drawn from random_state only with dropout
        (the default trajectory is untouched) and mixed with the samples seen,
        so successive partial_fit calls, which restart random_state, draw new
        masks."""
        draw = int(random_state.randint(_SEED_END, dtype=np.int64))
        return (draw + self.t_ * 0x9E3779B97F4A7C15) % 2**64

    def _diverged(self, learning_rate, what=None):
        if what is None:
            what = (
                f"the training loss is {self.loss_}"
                if not np.isfinite(self.loss_)
                else "the solver produced non-finite parameter weights"
            )
        rate = "" if learning_rate is None else f" ({learning_rate:g})"
        raise ValueError(
            f"Training diverged at iteration {self.n_iter_}: {what}. The learning "
            f"rate{rate} may be too high, or the input data may contain large "
            "values and need scaling (for example with StandardScaler). The "
            "previous model, if any, is kept."
        )

    def _stop_or_slow_down(self, optimizer):
        """After n_iter_no_change epochs without progress: stop, or cut the rate."""
        subject = "Training loss"
        if self.early_stopping:
            subject = "Validation " + self.early_stopping_metric
        msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
            subject,
            self.tol,
            self.n_iter_no_change,
        )
        if self.solver == "adam" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if optimizer["learning_rate"] <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        optimizer["learning_rate"] /= 5.0
        if self.verbose:
            print(msg + " Setting learning rate to %f" % optimizer["learning_rate"])
        return False

    def _split_validation(self, X, Y, sample_weight, random_state):
        """Hold out validation_fraction of the data, as scikit-learn does.

        Returns X, Y, sample_weight of the training part and the validation
        triple (X_val, Y_val, sw_val).
        """
        # Multilabel targets are not stratified.
        stratify = Y if self._is_classifier() and self.n_outputs_ == 1 else None
        arrays = [X, Y] + ([] if sample_weight is None else [sample_weight])
        parts = train_test_split(
            *arrays,
            random_state=random_state,
            test_size=self.validation_fraction,
            stratify=stratify,
        ) + [None, None]
        X, X_val, Y, Y_val, sw, sw_val = parts[:6]
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        return X, Y, sw, (X_val, Y_val, sw_val)

    def _update_no_improvement_count(self, val, flat, units, running=None):
        """Track progress; return True when the weights are the best so far."""
        if val is None:
            loss = self.loss_curve_[-1]
            if loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            improved = loss < self.best_loss_
            if improved:
                self.best_loss_ = loss
            return improved
        X_val, Y_val, y_val, sw_val = val
        output = self._forward_output(X_val, flat, units, running=running)
        if not np.isfinite(output).all():
            self._diverged(
                self.learning_rate_init,
                what="the validation predictions are not finite",
            )
        score = self._score_function(y_val, self._decode(output), sw_val)
        self.validation_scores_.append(score)
        kernels = _kernels if self.backend == "cython" else _reference
        val_loss, _ = kernels.loss_delta(
            output, Y_val, sw_val, None, _kernels.LOSSES[self._loss_name()],
            np.empty_like(output),
        )
        self.validation_loss_curve_.append(val_loss)
        if self.verbose:
            print("Validation score: %f" % score)
        if self.early_stopping_metric == "loss":
            if self.verbose:
                print("Validation loss: %f" % val_loss)
            # Stop and keep the best weights on the loss, as with the training
            # loss; best_validation_score_ is still the best score seen.
            self.best_validation_score_ = max(self.best_validation_score_, score)
            value, best = -val_loss, -self.best_validation_loss_
        else:
            value, best = score, self.best_validation_score_
        self.best_validation_loss_ = min(self.best_validation_loss_, val_loss)
        if value < best + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if value > best:
            self.best_validation_score_ = max(self.best_validation_score_, score)
            return True
        return False

    def _fit_full_batch(self, X, Y, sample_weight, units, flat, tasks,
                        running=None):
        """lbfgs or newton: scipy.optimize over the full-batch objective."""
        if self.solver == "newton":
            loss_grad, hessp, reported = self._newton_objective(
                X, Y, sample_weight, units
            )
            method = {"method": "trust-ncg", "hessp": hessp,
                      "options": {"maxiter": self.max_iter, "gtol": self.tol}}
            self.loss_curve_ = []
        else:
            loss_grad = self._lbfgs_objective(X, Y, sample_weight, units, flat,
                                              running)
            reported = None
            method = {"method": "L-BFGS-B",
                      "options": {"maxfun": self.max_fun, "maxiter": self.max_iter,
                                  "gtol": self.tol}}
        last = {"x": flat.copy(), "nit": 0, "fun": np.nan, "stop": False}

        def callback(intermediate_result):
            last["x"] = intermediate_result.x.copy()
            last["nit"] += 1
            last["fun"] = intermediate_result.fun
            if reported is not None:
                last["fun"] = reported(last["fun"], last["x"])
                self.loss_curve_.append(float(last["fun"]))
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (last["nit"], last["fun"]))
            x = last["x"].astype(flat.dtype)
            # With batch norm, running holds the statistics of the last
            # evaluation: the accepted point x.
            last["stop"] = tasks.end(x, units, running)
            tasks.begin(x, units, running)
            if last["stop"]:
                raise StopIteration

        tasks.begin(flat, units, running)
        try:
            result = scipy.optimize.minimize(
                loss_grad,
                flat.astype(np.float64),
                jac=True,
                callback=callback,
                **method,
            )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
            flat[:] = last["x"]
            self.n_iter_ = last["nit"]
            self.loss_ = last["fun"]
        else:
            self.n_iter_ = min(result.nit, self.max_iter)
            if result.status != 0 and not last["stop"]:
                msg = (
                    f"{self.solver} failed to converge after {self.n_iter_} "
                    f"iteration(s) (status={result.status}):\n{result.message}\n"
                )
                if self.n_iter_ == self.max_iter:
                    msg += (
                        "\nIncrease the number of iterations to improve the "
                        f"convergence (max_iter={self.max_iter})."
                    )
                msg += (
                    "\nYou might also want to scale the data as shown in:\n"
                    "    https://scikit-learn.org/stable/modules/preprocessing.html"
                )
                warnings.warn(msg, ConvergenceWarning, stacklevel=3)
            self.loss_ = float(result.fun)
            if reported is not None:
                self.loss_ = float(reported(result.fun, result.x))
            flat[:] = result.x
        tasks.close_empty()
        if not (np.isfinite(self.loss_) and self._backend().all_finite(flat)):
            self._diverged(None)
        if running is not None:
            loss_grad(flat.astype(np.float64))  # the statistics at the result

    def _lbfgs_objective(self, X, Y, sample_weight, units, flat, running=None):
        """The engine's (loss, gradient) for L-BFGS-B, evaluated in flat.

        With batch norm, every evaluation sets running to the whole data's
        mean and unbiased variance at flat (the batch statistics it used).
        """
        X_dense, csr = self._as_kernel_input(X, flat.dtype)
        plan = self._plan(units, X.shape[0], gather=False,
                          batch_norm=running is not None)
        work = np.empty(plan.work_size, dtype=flat.dtype)
        grad = np.empty_like(flat)
        backend = self._backend()
        n_threads = effective_n_threads(self.n_jobs)

        def loss_grad(x):
            flat[:] = x
            loss = backend.loss_grad(
                plan, X_dense, csr, Y, sample_weight, flat, grad, work, self.alpha,
                self.l1, 0, running, n_threads,
            )
            return loss, grad.astype(np.float64)

        return loss_grad

    # ------------------------------------------------------------------
    # prediction

    def _forward_output(self, X, flat=None, units=None, plan=None, running=None):
        """Output-layer activations for validated X (of plan's network if given;
        running: the batch-norm statistics that go with flat)."""
        if flat is None:
            flat = self._flat_params()
            units = self._fitted_units()
            if self._fitted_batch_norm():
                running = self._running_stats()
        X_dense, csr = self._as_kernel_input(X, flat.dtype)
        n_samples = X.shape[0]
        rows = max(1, min(n_samples, _PREDICT_ROWS))
        plan = plan(rows) if plan is not None else self._plan(
            units, rows, False, 0.0, running is not None
        )
        work = np.empty(plan.work_size, dtype=flat.dtype)
        out = np.empty((n_samples, units[-1]), dtype=flat.dtype)
        # Threads only for more than one block of rows (tiny passes skip
        # asking OpenMP what it allows).
        n_threads = 1 if n_samples <= rows else effective_n_threads(self.n_jobs)
        with _blas_threads(rows, units):
            self._backend().forward(plan, X_dense, csr, flat, work, out, running,
                                    n_threads)
        return out

    def transform(self, X):
        """The last hidden layer's activations: the learned features of X.

        Lets a fitted network feed another estimator, for example as the
        first step of a Pipeline; follows ``set_output``. Not in
        scikit-learn.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        X_new : ndarray of shape (n_samples, hidden_layer_sizes[-1])
            Activations of the last hidden layer, in the dtype of the weights.
        """
        X = self._validated_X(X)
        if len(self.coefs_) < 2:
            raise ValueError(
                "transform returns the last hidden layer's activations; this "
                "network has no hidden layer (hidden_layer_sizes=())."
            )
        units = self._fitted_units()[:-1]
        acts = hidden_activations(self.activation, len(units) - 1)
        dtype = self.coefs_[0].dtype
        # Batch norm: every layer of the truncated network is normalized.
        flat = np.concatenate(
            [pack(self.coefs_[:-1], self.intercepts_[:-1], dtype)]
            + [np.ravel(a) for a in self._bn_parts()]
        ).astype(dtype, copy=False)
        bn = (self._fitted_batch_norm(),) * (len(units) - 1)
        return self._forward_output(X, flat, units, plan=lambda rows: make_plan(
            units, acts[:-1], acts[-1], "squared_error", rows, False, batch_norm=bn),
            running=self._running_stats())

    @property
    def _n_features_out(self):
        # Width of the last hidden layer: names for get_feature_names_out.
        return self.coefs_[-1].shape[0]

    def _fitted_units(self):
        """Layer widths of the fitted network, input first."""
        return [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]

    def _flat_params(self):
        """The flat buffer behind coefs_ and intercepts_.

        In-place edits of coefs_[i] are edits of the buffer; if an entry was
        replaced by another array, a new buffer is packed from the lists.
        """
        flat = getattr(self, "_flat", None)
        if flat is not None and all(
            a.base is flat for a in self.coefs_ + self.intercepts_
        ) and (getattr(self, "batch_norm_scale_", None) is None
               or all(a.base is flat for a in self._bn_parts())):
            return flat
        return self._packed(self.coefs_[0].dtype)

    def __getstate__(self):
        # coefs_ and intercepts_ carry the weights; the buffer is rebuilt.
        # A copy: object.__getstate__ returns the live __dict__ itself.
        state = dict(super().__getstate__())
        state.pop("_flat", None)
        state.pop("_bn_running", None)
        state["_fastbp_version"] = __version__
        return state

    def __setstate__(self, state):
        saved = state.pop("_fastbp_version", "pre-0.1")
        if saved != __version__:
            warnings.warn(
                f"Loading a {type(self).__name__} saved by fastbp {saved} with "
                f"fastbp {__version__}: the fitted state may not be compatible.",
                FastbpVersionWarning,
                stacklevel=2,
            )
        super().__setstate__(state)
        if "coefs_" in state:
            self._set_params_flat(self._flat_params(), self._fitted_units(),
                                  self._running_stats())

    def _validated_output(self, X):
        if not self._is_plain_input(X):
            X = self._validated_X(X)
        out = self._forward_output(X)
        if not self._backend().all_finite(out.reshape(-1)):
            raise ValueError(
                "The network's output is not finite for some rows of X: their "
                f"values overflow the fitted {out.dtype} network. Scale X as "
                "the training data was scaled (for example with StandardScaler)."
            )
        return out

    def _validated_X(self, X):
        """X checked against the fitted model, as predict takes it."""
        check_is_fitted(self)
        return validate_data(
            self, X, accept_sparse=["csr", "csc"], reset=False,
            dtype=(np.float64, np.float32),
        )

    def _is_plain_input(self, X):
        """True for X that validate_data would pass through unchanged.

        That is a finite float ndarray of the fitted width for a model fitted
        without feature names. Checking it directly costs a few microseconds;
        validate_data dominates single-row predict otherwise. Anything else
        (and a sum that overflows) takes the full validation.
        """
        return (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.dtype in (np.float64, np.float32)
            and X.shape[0] > 0
            and "coefs_" in self.__dict__
            and "feature_names_in_" not in self.__dict__
            and X.shape[1] == self.n_features_in_
            and np.isfinite(X.sum())
        )

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True

    def _is_classifier(self):
        return isinstance(self, ClassifierMixin)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_PARAMETERS_DOC = """
    hidden_layer_sizes : array-like of shape(n_layers - 2,), default=(100,)
        The ith element represents the number of neurons in the ith
        hidden layer.

    activation : str or list of str, default='relu'
        Activation function for the hidden layers: 'identity' f(x) = x,
        'logistic' f(x) = 1 / (1 + exp(-x)), 'tanh' f(x) = tanh(x),
        'relu' f(x) = max(0, x) (scikit-learn's four), and beyond
        scikit-learn: 'leaky_relu' f(x) = max(x, 0.01 x) (PyTorch's default
        slope), 'elu' f(x) = x if x > 0 else exp(x) - 1 (alpha = 1), 'gelu'
        f(x) = x Phi(x) with Phi the standard normal CDF (the exact erf form,
        PyTorch's default, not the tanh approximation), 'softplus'
        f(x) = log(1 + exp(x)), 'silu' (swish) f(x) = x / (1 + exp(-x)),
        'softsign' f(x) = x / (1 + |x|). A list or tuple gives one name per
        hidden layer (its length must be len(hidden_layer_sizes)); Glorot
        initialisation then uses each layer's own activation, and the
        output layer the last hidden layer's.

    solver : {'lbfgs', 'sgd', 'adam', 'adagrad', 'rmsprop', 'adadelta', \
'adamw', 'adamax', 'nadam', 'newton'}, default='adam'
        The solver for weight optimization: 'lbfgs' (scipy's L-BFGS-B on the
        full batch), 'sgd' (stochastic gradient descent with momentum) or
        'adam' (Kingma & Ba, 2014), as in scikit-learn; and, stochastic and
        compiled like them: 'adagrad' (Duchi et al., 2011), 'rmsprop'
        (Tieleman & Hinton, 2012; decay rho), 'adadelta' (Zeiler, 2012;
        decay rho, step scaled by learning_rate_init), 'adamw' (Loshchilov
        & Hutter, 2019; decoupled weight_decay), 'adamax' (Kingma & Ba,
        2015, sec. 7.1) and 'nadam' (Dozat, 2016, constant momentum beta_1).
        Each rule's formula is in the docstring of its step function in
        ``fastbp._optimizers``. 'newton' (not in scikit-learn): scipy's
        trust-region Newton-CG, 'trust-ncg', on the full batch with exact
        Hessian-vector products.

    alpha : float, default=0.0001
        Strength of the L2 regularization term. The L2 regularization term
        is divided by the sample size when added to the loss.

    batch_size : int, default='auto'
        Size of minibatches for stochastic optimizers. When set to "auto",
        `batch_size=min(200, n_samples)`.

    learning_rate : {'constant', 'invscaling', 'adaptive', 'step', \
'exponential', 'cosine'} or callable, default='constant'
        Learning rate schedule, one rate per epoch, for every stochastic
        solver: 'constant' keeps learning_rate_init; 'invscaling' uses
        learning_rate_init / pow(t + 1, power_t) after each epoch (t counts
        the samples seen); 'adaptive' divides the rate by 5 each time
        n_iter_no_change consecutive epochs fail to improve by tol. These
        three are scikit-learn's; as there, solver='adam' ignores them.
        Not in scikit-learn: 'step' (multiply by lr_gamma every
        lr_step_size epochs), 'exponential' (by lr_gamma ** (1 /
        lr_step_size) each epoch), 'cosine' (cosine annealing to lr_min,
        with warm restarts when lr_cycle is set), or a callable
        ``f(epoch, lr) -> lr`` given the epoch (from 0) and the previous
        epoch's rate. See ``fastbp._schedules`` for the formulas. The rates
        used are recorded in ``learning_rate_curve_``.

    learning_rate_init : float, default=0.001
        The initial learning rate (every stochastic solver).

    power_t : float, default=0.5
        The exponent for inverse scaling learning rate (invscaling; every
        stochastic solver but adam, which ignores it as in scikit-learn).

    max_iter : int, default=200
        Maximum number of iterations: epochs for stochastic solvers, L-BFGS
        iterations for lbfgs, trust-region iterations for newton.

    shuffle : bool, default=True
        Whether to shuffle samples in each iteration (stochastic solvers).

    random_state : int, RandomState instance, default=None
        Determines the weight and bias initialization, the train-validation
        split with early stopping, and batch sampling. Consumed in
        scikit-learn's order, so the same seed gives the same training.

    tol : float, default=1e-4
        Tolerance for the optimization. When the loss or score is not
        improving by at least tol for n_iter_no_change consecutive
        iterations, convergence is reached and training stops (unless
        learning_rate is 'adaptive'). For lbfgs, the tolerance on the largest
        gradient entry; for newton, on the gradient's Euclidean norm.

    verbose : bool, default=False
        Whether to print progress messages to stdout.

    warm_start : bool, default=False
        When set to True, reuse the solution of the previous call to fit as
        initialization. Unlike scikit-learn, the new fit starts its
        patience and best-score bookkeeping afresh.

    momentum : float, default=0.9
        Momentum for gradient descent update, between 0 and 1 (sgd).

    nesterovs_momentum : bool, default=True
        Whether to use Nesterov's momentum (sgd, momentum > 0).

    early_stopping : bool, default=False
        Whether to hold out validation_fraction of the training data (or use
        fit's X_val, y_val) and stop when the validation score (see
        early_stopping_metric) has not improved by at least tol for
        n_iter_no_change consecutive epochs; the best weights are restored.
        Stratified for single-output classification. Stochastic solvers only.

    validation_fraction : float, default=0.1
        The proportion of training data to set aside as validation set for
        early stopping.

    beta_1 : float, default=0.9
        Exponential decay rate for estimates of first moment vector in adam
        (and adamw, adamax, nadam), should be in [0, 1).

    beta_2 : float, default=0.999
        Exponential decay rate for estimates of second moment vector in adam
        (and adamw, nadam; adamax's infinity-norm decay), should be in
        [0, 1).

    epsilon : float, default=1e-8
        Value for numerical stability in adam (and in every adaptive solver:
        added to the root in the denominator; inside both roots for
        adadelta).

    n_iter_no_change : int, default=10
        Maximum number of epochs to not meet tol improvement (stochastic
        solvers).

    max_fun : int, default=15000
        Maximum number of loss function calls (lbfgs only).

    rho : float, default=0.9
        Decay rate of the running average of squared gradients in 'rmsprop'
        and of squared gradients and updates in 'adadelta', in [0, 1).
        0.9 is Hinton's RMSprop value (Keras's default) and PyTorch's
        Adadelta default. Not in scikit-learn.

    weight_decay : float, default=0.01
        Decoupled weight decay of 'adamw' (PyTorch's default): each step
        first multiplies every weight by 1 - lr * weight_decay. Other solvers
        ignore it (alpha is their L2 penalty). Not in scikit-learn.

    lr_step_size : int, default=10
        Epochs per decay by lr_gamma ('step' and 'exponential' schedules).
        Not in scikit-learn.

    lr_gamma : float, default=0.1
        Decay factor in (0, 1] per lr_step_size epochs ('step',
        'exponential'). Not in scikit-learn.

    lr_min : float, default=0.0
        The rate the 'cosine' schedule anneals to. Not in scikit-learn.

    lr_cycle : int or None, default=None
        'cosine' with warm restarts (SGDR): epochs of the first cycle. None:
        a single annealing over max_iter - warmup_epochs epochs. Not in
        scikit-learn.

    lr_cycle_mult : int, default=1
        Each warm-restart cycle is lr_cycle_mult times longer than the one
        before ('cosine' with lr_cycle). Not in scikit-learn.

    warmup_epochs : int, default=0
        Linear warm-up before any schedule: epoch e < warmup_epochs uses
        learning_rate_init * (e + 1) / (warmup_epochs + 1); the schedule
        then starts from its own epoch 0. Not in scikit-learn.

    clip_norm : float or None, default=None
        Gradient clipping by global norm (stochastic solvers): when the L2
        norm of a minibatch's whole gradient (every weight and intercept,
        L2 term included) exceeds clip_norm, the gradient is scaled down to
        norm clip_norm before the optimizer step. None: off. Not in
        scikit-learn.

    clip_value : float or None, default=None
        Gradient clipping by value (stochastic solvers): each gradient entry
        is clipped to [-clip_value, clip_value] before the step (and before
        clip_norm when both are set). None: off. Not in scikit-learn.

    backend : {'cython', 'numpy'}, default='cython'
        Where the epoch runs: the compiled engine, or its pure-NumPy twin
        (the same algorithm, for checking and benchmarking). Not in
        scikit-learn.

    n_jobs : int or None, default=None
        Threads for training steps and predictions: None, what OpenMP allows
        (``OMP_NUM_THREADS``, threadpoolctl limits; inside joblib workers
        their share), at most the cores; n > 0, n; n < 0, cores + 1 + n.
        Small steps run on one thread. The same n_jobs gives the same
        result bit for bit; ``n_jobs=1`` follows scikit-learn's trajectory
        (sgd, adam, float64). Not in scikit-learn's MLP.

    l1 : float, default=0.0
        Strength of the L1 regularization term on the coefficients (not the
        intercepts), scaled as alpha is: each batch's loss gains
        l1 * ||W||_1 / n (n the batch's sample-weight sum, as alpha's
        alpha * ||W||^2 / (2 n)), whose subgradient l1 * sign(W) / n is 0 at
        W = 0. Together with alpha: the elastic net. The reported loss
        includes it. solver='newton' refuses it: the objective is not twice
        differentiable. Not in scikit-learn.

    early_stopping_metric : {'score', 'loss'}, default='score'
        What early stopping watches on the validation set: 'score'
        (scikit-learn's behaviour: accuracy or R^2 must improve by tol) or
        'loss' (the validation loss must fall by tol); the weights of the
        best epoch by that metric are restored. Not in scikit-learn.

    restore_best_weights : bool, default=False
        Without a validation set (early_stopping=False), restore at the end
        of fit the weights at the end of the epoch with the lowest training
        loss (scikit-learn keeps the last weights). With early_stopping the
        best validation weights are always restored. fit only, not
        partial_fit. Not in scikit-learn.

    dropout : float or list of float, default=0.0
        Inverted dropout on the hidden layers' activations in training: each
        unit is zeroed with this probability and the kept ones are scaled by
        1 / (1 - dropout), so predict (which never drops) needs no rescaling.
        One rate for every hidden layer, or a list with one per hidden
        layer. The masks are reproducible from random_state (one seed drawn
        per epoch, only when dropout is on, mixed with the number of samples
        seen so that successive partial_fit calls draw new masks). Stochastic
        solvers only. Not in scikit-learn.
"""

_BATCH_NORM_DOC = """
    batch_norm : bool, default=False
        Batch normalization (Ioffe & Szegedy, 2015) on every hidden layer:
        Z = A W + b is normalized with the minibatch's mean and biased
        variance, (Z - mean) / sqrt(var + 1e-5), then scaled and shifted by
        learned gamma (init 1) and beta (init 0) before the activation. In
        training the statistics are the minibatch's (lbfgs: the whole
        data's) and unweighted (sample weights act in the loss only);
        predict and transform use running statistics, updated after every
        minibatch as running = 0.9 running + 0.1 batch with the unbiased
        batch variance (PyTorch's defaults; a one-row minibatch leaves the
        running variance). The normalization cancels the intercepts of the
        hidden layers: they are kept (so coefs_ and intercepts_ keep
        scikit-learn's shapes) and their gradient is exactly 0, so they stay
        at their initial values. L2 and L1 penalties apply to the
        coefficients only. ONNX export folds it into the affine layers;
        solver='newton' and the second-order tools refuse it. Not in
        scikit-learn.
"""

_ATTRIBUTES_DOC = """
    loss_ : float
        The current loss computed with the loss function.

    best_loss_ : float or None
        The minimum loss reached by the solver throughout fitting; None with
        early_stopping. Stochastic solvers only.

    loss_curve_ : list of shape (`n_iter_`,)
        The loss at the end of each training step (stochastic solvers), or
        after each iteration of the last fit (newton).

    learning_rate_curve_ : list of shape (`n_iter_`,)
        The learning rate each epoch used (stochastic solvers; continued by
        partial_fit and warm_start like loss_curve_). Not in scikit-learn.

    validation_scores_ : list of shape (`n_iter_`,) or None
        The score at each iteration on a held-out validation set
        (early_stopping only, else None).

    best_validation_score_ : float or None
        The best validation score (early_stopping only, else None).

    validation_loss_curve_ : list of shape (`n_iter_`,) or None
        The loss on the validation set after each epoch (early_stopping
        only, else None): the data term, without the alpha and l1 penalties,
        weighted by the validation sample weights. Not in scikit-learn.

    best_validation_loss_ : float or None
        The lowest validation loss (early_stopping only, else None).

    t_ : int
        The number of training samples seen by the solver during fitting.

    coefs_ : list of shape (n_layers - 1,)
        coefs_[i] is the (fan_in, fan_out) weight matrix of layer i: a view
        into one flat parameter buffer.

    intercepts_ : list of shape (n_layers - 1,)
        intercepts_[i] is the bias vector of layer i + 1 (also a view).

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    n_iter_ : int
        The number of iterations the solver has run.

    n_layers_ : int
        Number of layers.

    n_outputs_ : int
        Number of outputs.

    out_activation_ : str
        Name of the output activation function.

    batch_norm_scale_, batch_norm_shift_ : list of ndarray or None
        With batch_norm, the learned gamma and beta of each hidden layer,
        of shape (hidden_layer_sizes[i],); None without. Not in
        scikit-learn.

    batch_norm_mean_, batch_norm_var_ : list of ndarray or None
        With batch_norm, the running mean and (unbiased) variance of each
        hidden layer's Z = A W + b, used by predict; None without. Not in
        scikit-learn.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = (
        """Multi-layer Perceptron classifier, trained by compiled backpropagation.

    A drop-in replacement for ``sklearn.neural_network.MLPClassifier``: the
    same parameters, defaults, attributes and training trajectory for the same
    random_state, with the whole epoch running in compiled code. It optimizes
    the log-loss with L-BFGS, SGD or Adam, or (beyond scikit-learn) Newton,
    Adagrad, RMSprop, Adadelta, AdamW, Adamax or Nadam, with learning-rate
    schedules and gradient clipping for every stochastic solver.

    Parameters
    ----------"""
        + _PARAMETERS_DOC
        + """
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, as in LogisticRegression: a dict
        {class_label: weight} (classes not in it weigh 1), or 'balanced' for
        n_samples / (n_classes * np.bincount(y)) computed on the labels of
        each fit. Multiplied into sample_weight. Single-output targets only;
        partial_fit takes a dict only. Not in scikit-learn's MLP.
"""
        + _BATCH_NORM_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels for each output.
"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    MLPRegressor : Multi-layer Perceptron regressor.
    sklearn.neural_network.MLPClassifier : The estimator this one replaces.

    Notes
    -----
    float32 input trains and predicts in float32; anything else in float64.
    Sparse CSR/CSC input is used as is in the first layer's products.

    Examples
    --------
    >>> from fastbp import MLPClassifier
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=100, random_state=1)
    >>> clf = MLPClassifier(random_state=1, max_iter=300).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    """
    )

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        rho=0.9,
        weight_decay=0.01,
        lr_step_size=10,
        lr_gamma=0.1,
        lr_min=0.0,
        lr_cycle=None,
        lr_cycle_mult=1,
        warmup_epochs=0,
        clip_norm=None,
        clip_value=None,
        backend="cython",
        n_jobs=None,
        l1=0.0,
        early_stopping_metric="score",
        restore_best_weights=False,
        dropout=0.0,
        class_weight=None,
        batch_norm=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.rho = rho
        self.weight_decay = weight_decay
        self.lr_step_size = lr_step_size
        self.lr_gamma = lr_gamma
        self.lr_min = lr_min
        self.lr_cycle = lr_cycle
        self.lr_cycle_mult = lr_cycle_mult
        self.warmup_epochs = warmup_epochs
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.backend = backend
        self.n_jobs = n_jobs
        self.l1 = l1
        self.early_stopping_metric = early_stopping_metric
        self.restore_best_weights = restore_best_weights
        self.dropout = dropout
        self.class_weight = class_weight
        self.batch_norm = batch_norm

    loss = "log_loss"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        Y = self._label_binarizer.transform(y)
        return X, Y.reshape(Y.shape[0], -1)

    def _output_activation(self, Y):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _encode_targets(self, y):
        """Validation labels as the binarized targets the network fits."""
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y_val")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y)
        unknown = np.setdiff1d(unique_labels(y), self.classes_)
        if len(unknown):
            raise ValueError(f"y_val has classes not in `self.classes_`: {unknown}.")
        return self._label_binarizer.transform(y)

    def _weigh_classes(self, Y, sample_weight, incremental, dtype):
        # As LogisticRegression: weights from compute_class_weight on this
        # fit's labels, multiplied into sample_weight.
        if self.class_weight is None:
            return sample_weight
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            raise ValueError("class_weight is not supported for multilabel targets.")
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                "class_weight 'balanced' is not supported for partial_fit: the "
                "class frequencies of later batches are unknown. Pass a dict."
            )
        index = Y[:, 0].astype(np.intp) if Y.shape[1] == 1 else Y.argmax(axis=1)
        weights = compute_class_weight(
            self.class_weight, classes=self.classes_, y=self.classes_[index]
        ).astype(dtype)[index]
        if sample_weight is not None:
            weights *= sample_weight
        if not np.any(weights > 0):
            raise ValueError(
                "Sample weights times class weights must contain at least one "
                "non-zero number."
            )
        return np.ascontiguousarray(weights)

    def _start_partial_fit(self, y, classes):
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is None:
            return
        if getattr(self, "classes_", None) is not None:
            if not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(
                    "`classes=%r` is not the same as on last call "
                    "to partial_fit, was: %r" % (classes, self.classes_)
                )
            return
        self.classes_ = unique_labels(classes)
        self._label_binarizer = LabelBinarizer()
        if y is not None and type_of_target(y, input_name="y").startswith(
            "multilabel"
        ):
            self._label_binarizer.fit(y)
        else:
            self._label_binarizer.fit(classes)

    def _decode(self, output):
        # LabelBinarizer.inverse_transform's rules for the common cases,
        # without its validation overhead (a fifth of single-row predict).
        y_type = self._label_binarizer.y_type_
        if y_type == "multiclass":
            return self.classes_.take(output.argmax(axis=1), mode="clip")
        if y_type == "binary" and len(self.classes_) == 2:
            return self.classes_[(output.ravel() > 0.5).astype(int)]
        if self.n_outputs_ == 1:
            output = output.ravel()
        return self._label_binarizer.inverse_transform(output)

    def _score_function(self, y, y_pred, sample_weight):
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        return self._decode(self._validated_output(X))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : array-like of shape (n_samples,)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required on the first
            call and optional afterwards. y need not contain all of them.

        Returns
        -------
        self : object
            Trained MLP model.
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_log_proba(self, X):
        """Return the log of probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            log(predict_proba(X)), classes ordered as in `classes_`.
        """
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The predicted probability of the sample for each class in the
            model, where classes are ordered as they are in `classes_`.
        """
        y_pred = self._validated_output(X)
        if self.n_outputs_ == 1:
            p = y_pred.ravel()
            return np.vstack([1 - p, p]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = (
        """Multi-layer Perceptron regressor, trained by compiled backpropagation.

    A drop-in replacement for ``sklearn.neural_network.MLPRegressor``: the
    same parameters, defaults, attributes and training trajectory for the same
    random_state, with the whole epoch running in compiled code. It optimizes
    the squared error (or the Poisson deviance) with L-BFGS, SGD or Adam, or
    (beyond scikit-learn) Newton, Adagrad, RMSprop, Adadelta, AdamW, Adamax
    or Nadam, with learning-rate schedules and gradient clipping for every
    stochastic solver.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        The loss: half the squared error with an identity output, or half
        the Poisson deviance with an exp output (y must be non-negative).
"""
        + _PARAMETERS_DOC
        + _BATCH_NORM_DOC
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    MLPClassifier : Multi-layer Perceptron classifier.
    sklearn.neural_network.MLPRegressor : The estimator this one replaces.

    Notes
    -----
    Unlike scikit-learn's, ``partial_fit`` is absent with solver='lbfgs'
    (scikit-learn's check is broken and silently runs a full fit), and
    negative targets with loss='poisson' raise a ValueError.

    Examples
    --------
    >>> from fastbp import MLPRegressor
    >>> from sklearn.datasets import make_regression
    >>> X, y = make_regression(n_samples=200, n_features=20, random_state=1)
    >>> regr = MLPRegressor(random_state=1, max_iter=2000, tol=0.1).fit(X, y)
    >>> regr.predict(X[:2]).shape
    (2,)
    """
    )

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        rho=0.9,
        weight_decay=0.01,
        lr_step_size=10,
        lr_gamma=0.1,
        lr_min=0.0,
        lr_cycle=None,
        lr_cycle_mult=1,
        warmup_epochs=0,
        clip_norm=None,
        clip_value=None,
        backend="cython",
        n_jobs=None,
        l1=0.0,
        early_stopping_metric="score",
        restore_best_weights=False,
        dropout=0.0,
        batch_norm=False,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.rho = rho
        self.weight_decay = weight_decay
        self.lr_step_size = lr_step_size
        self.lr_gamma = lr_gamma
        self.lr_min = lr_min
        self.lr_cycle = lr_cycle
        self.lr_cycle_mult = lr_cycle_mult
        self.warmup_epochs = warmup_epochs
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.backend = backend
        self.n_jobs = n_jobs
        self.l1 = l1
        self.early_stopping_metric = early_stopping_metric
        self.restore_best_weights = restore_best_weights
        self.dropout = dropout
        self.batch_norm = batch_norm

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                "Some value(s) of y are negative which is not allowed for "
                "Poisson regression (loss='poisson')."
            )
        return X, y.reshape(y.shape[0], -1)

    def _output_activation(self, Y):
        return "exp" if self.loss == "poisson" else "identity"

    def _encode_targets(self, y):
        return check_array(
            y, ensure_2d=False, dtype=(np.float64, np.float32), input_name="y_val"
        )

    def _start_partial_fit(self, y, classes):
        pass

    def _decode(self, output):
        return output.ravel() if output.shape[1] == 1 else output

    def _score_function(self, y, y_pred, sample_weight):
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        return self._decode(self._validated_output(X))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            Trained MLP model.
        """
        return self._fit(X, y, sample_weight, incremental=True)
