"""Drop-in replacements for scikit-learn's MLPClassifier and MLPRegressor.

The estimators are the scikit-learn face: parameters, validation, labels,
``fit``/``partial_fit``/``predict``. A fit builds its own records (the model,
its history, the optimizer state) and commits them to the estimator once it
has succeeded; the drivers in ``_stochastic`` and ``_full_batch`` train them,
the engine (``fastbp._epoch`` or its NumPy twin) runs every pass.
"""

import os
import threading
import warnings
import weakref
from dataclasses import replace
from functools import partial
from typing import NamedTuple

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
)
from sklearn.callback import CallbackSupportMixin, with_callbacks
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

import fastbp._array_api as _array_api
import fastbp._docs as _docs
import fastbp._full_batch as _full_batch
import fastbp._stochastic as _stochastic
from fastbp._backend import BACKENDS
from fastbp._callbacks import FitTasks
from fastbp._families import LOSS
from fastbp._finite import non_finite_error
from fastbp._fitted_state import check_fitted_state, ensure_checked, trust
from fastbp._forward import forward
from fastbp._full_batch import Objective
from fastbp._inputs import all_finite_float, check_sample_weight
from fastbp._network import (
    glorot_init, hidden_activations, init_batch_norm, make_plan, reading_params_of,
)
from fastbp._params import STOCHASTIC_SOLVERS, fit_settings
from fastbp._second_order import SecondOrderMixin, refuse_batch_norm
from fastbp._state import History, Model, Network, Optimizer, loss_name, loss_param
from fastbp._threads import effective_n_threads
from fastbp._version import __version__

# Fits and partial fits of one estimator run one at a time (a second waits),
# so none loses the other's steps; commits and snapshots (pickling) of any
# estimator take _COMMIT, so a snapshot is the old model or the new one.
_FIT_LOCKS = weakref.WeakKeyDictionary()
_REGISTRY = threading.Lock()
_COMMIT = threading.Lock()


def _fit_lock(estimator):
    with _REGISTRY:
        return _FIT_LOCKS.setdefault(estimator, threading.RLock())


def _after_fork_in_child():
    # A lock another thread of the parent held stays held in the child,
    # where that thread does not exist: start with fresh ones (the forking
    # thread keeps the lock objects it holds, and releases those).
    global _REGISTRY, _COMMIT, _FIT_LOCKS
    _REGISTRY, _COMMIT = threading.Lock(), threading.Lock()
    _FIT_LOCKS = weakref.WeakKeyDictionary()


os.register_at_fork(after_in_child=_after_fork_in_child)

_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def _float_dtypes(space):
    """validate_data's dtype for X: NumPy's floats, or the namespace's."""
    return (np.float64, np.float32) if space is None else space.float_dtypes()


def _plans_by_rows(plans, make):
    """plan_for(rows): make(rows), kept in the dict plans (a few sizes at a
    time: predict's row counts vary, each plan is cheap to remake)."""
    def plan_for(rows):
        plan = plans.get(rows)
        if plan is None:
            if len(plans) > 16:
                plans.clear()
            plan = plans[rows] = make(rows)
        return plan

    return plan_for


def _known_labels_encoded(y, binarizer, fitted):
    """binarizer.transform(y), reshaped to (n, n_outputs), for a 1-D array of
    plain labels that are all among the sorted fitted ones; None otherwise,
    for the general path's checks and messages. LabelBinarizer.transform
    runs type_of_target and check_array several times: most of a small
    partial_fit's Python time."""
    if not (type(y) is np.ndarray and y.ndim == 1 and y.dtype.kind in "biufU"
            and fitted.dtype.kind in "biufU" and len(fitted) >= 2
            and binarizer.y_type_ in ("binary", "multiclass")
            and (binarizer.y_type_ == "binary") == (len(fitted) == 2)
            and (y.dtype.kind == "U") == (fitted.dtype.kind == "U")):
        return None
    at = np.searchsorted(fitted, y)
    np.minimum(at, len(fitted) - 1, out=at)
    if not np.array_equal(fitted[at], y):
        return None
    if len(fitted) == 2:
        return (at == 1).astype(np.int64).reshape(-1, 1)
    Y = np.zeros((len(y), len(fitted)), dtype=np.int64)
    Y[np.arange(len(y)), at] = 1
    return Y


class FastbpVersionWarning(UserWarning):
    """A model file written by another fastbp version was loaded."""


class _BaseMLP(SecondOrderMixin, CallbackSupportMixin,
               ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """The scikit-learn face both estimators share.

    Subclasses define ``_y_kwargs`` (validate_data's options for y),
    ``_targets`` (y as the network's targets, and the label attributes),
    ``_weigh_classes``, ``_output_activation``, ``_encode_targets``,
    ``_decode`` and ``_score_function``.
    """

    _y_kwargs = {}

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
        with _fit_lock(self):
            return self._fit(X, y, sample_weight, incremental=False,
                             val_set=val_set)

    def _partial_fit(self, X, y, sample_weight, classes=None):
        with _fit_lock(self):
            return self._fit(X, y, sample_weight, incremental=True,
                             classes=classes)

    @with_callbacks
    def _fit(self, X, y, sample_weight, incremental, classes=None, val_set=None):
        """One fit: build every fitted attribute, then commit them at once."""
        s = fit_settings(self, incremental, val_set is not None)
        fitted, tasks = self._train(s, X, y, sample_weight, classes, val_set)
        with _COMMIT:
            for name, value in fitted.items():
                if value is _DELETE:
                    self.__dict__.pop(name, None)
                else:
                    self.__dict__[name] = value
            trust(self)  # built by this fit: no need to check it again
        tasks.finish()  # the estimator itself is now the fitted model
        return self

    def _train(self, s, X, y, sample_weight, classes, val_set):
        """The fitted attributes of a fit with settings s (and the callbacks'
        task tree, to finish once they are committed). Reads the estimator,
        never changes it."""
        attrs = dict(self.__dict__)  # the previous model, read once
        first_pass = "coefs_" not in attrs or not (s.warm_start or s.incremental)
        # The array-API path (fastbp._array_api) or None: the compiled engine.
        space = (_array_api.space_of(X) if first_pass else
                 _array_api.call_space(attrs["coefs_"][0], X, self,
                                       "partial_fit" if s.incremental else "fit"))
        if space is not None:
            _array_api.check_fit(s, hidden_activations(s.activation, len(s.hidden)))
            # Labels and weights are checked and encoded on the host.
            y, sample_weight = space.to_host(y), space.to_host(sample_weight)
            if val_set is not None:
                val_set = (val_set[0], *map(space.to_host, val_set[1:]))
        d = self._fit_data(s, X, y, sample_weight, attrs, first_pass, classes,
                           space=space)
        fitted = {**d.fitted, **d.labels}
        labels = {**attrs, **d.labels}
        dtype = d.Y.dtype
        units = (d.X.shape[1], *s.hidden, d.Y.shape[1])
        val = None
        if space is not None and self._is_classifier():
            _array_api.check_labels(labels["classes_"],
                                    labels["_label_binarizer"].y_type_)
        if val_set is not None:
            val = self._validated_val_set(*val_set, d.ref, labels, d.Y.shape[1],
                                          dtype, space)
            self._check_target_range(val[1], s, "y_val")
        random_state = check_random_state(s.random_state)
        if first_pass:
            out_activation = self._output_activation(labels, s)
            model = _new_model(units, s, random_state, dtype)
            fitted.update(n_outputs_=units[-1], n_layers_=len(units),
                          out_activation_=out_activation)
        else:
            out_activation = attrs["out_activation_"]
            self._check_output(out_activation, labels, s)
            model = _kept_model(attrs, units, s.batch_norm)
        history = History.start(attrs, s, first_pass)
        network = Network(s.activation, out_activation,
                          loss_name(out_activation, s.loss), loss_param(s))
        backend = BACKENDS[s.backend]
        data = (d.X, d.Y, d.sample_weight)
        if space is not None:
            backend = _array_api.Engine(space)
            data = (d.X, space.asarray(d.Y), space.asarray(d.sample_weight))
            if not s.stochastic:  # lbfgs's iterates are SciPy's, on the host
                model = Model(space.to_host(model.flat), units)
            elif isinstance(model.flat, np.ndarray):  # drawn on the host
                model = Model(space.asarray(model.flat), units,
                              space.asarray(model.running))
        n_threads = effective_n_threads(s.n_jobs)
        # Full-batch solvers get one extra, empty subtask: scipy reports an
        # iteration after it ran.
        tasks = FitTasks(
            self, d.X, d.y, d.sample_weight,
            ((1 if s.incremental else s.max_iter) if s.stochastic
             else s.max_iter + 1),
            "epoch" if s.stochastic else "iteration",
            {k: v for k, v in fitted.items() if v is not _DELETE},
        )
        if s.stochastic:
            kept = attrs.get("_optimizer")
            # The same widths and dtype as before are checked above, so a
            # kept state always fits the model.
            if not s.incremental or kept is None or kept["solver"] != s.solver:
                optimizer = Optimizer.new(s.solver, model.flat.shape[0], dtype,
                                          s.learning_rate_init)
                if space is not None:
                    optimizer.state = space.asarray(optimizer.state)
            else:
                optimizer = Optimizer.of(kept)
            target = _stochastic.Target(
                network, decode=partial(self._decode, labels=labels),
                score=self._score_function, classifier=self._is_classifier())
            _stochastic.train(s, model, history, optimizer, data, val, target,
                              backend, tasks, random_state, n_threads)
            fitted["_optimizer"] = optimizer.record()
        else:
            problem = Objective(network, units, *data, dtype, s.alpha, s.l1,
                                backend, model.running)
            _full_batch.train(s, model, history, problem, tasks, n_threads)
            if space is not None:
                model = Model(space.asarray(model.flat), units)
        fitted.update(model.attributes())
        fitted.update(history.attributes())
        return fitted, tasks

    def _fit_data(self, s, X, y, sample_weight, attrs, first_pass, classes=None,
                  dtype=None, space=None):
        """The first half of a fit, and of ``_objective``: X and y validated,
        y as the network's targets Y (checked against the labels attrs
        hold), the label attributes this fit sets, and the sample weights
        times the class weights; Y and the weights in dtype (default: X's on
        a first pass, the fitted weights' otherwise)."""
        X, y, ref, fitted = self._validated_Xy(X, y, reset=first_pass,
                                               space=space)
        Y, labels = self._targets(y, attrs, s, classes)
        if not first_pass:
            self._check_continued(attrs, labels)
        if dtype is None:
            dtype = X.dtype if first_pass else attrs["coefs_"][0].dtype
            if space is not None:  # the host twin of the namespace's dtype
                dtype = space.host_dtype(dtype)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], dtype)
        sample_weight = self._weigh_classes(Y, sample_weight, s.class_weight,
                                            {**attrs, **labels}, dtype)
        Y = np.ascontiguousarray(Y, dtype=dtype)
        return _FitData(X, y, Y, sample_weight, labels, ref, fitted)

    def _objective(self, X, y, sample_weight, dtype=None):
        """The full-batch objective on (X, y) at the fitted weights, and those
        weights, in dtype (default: the weights' own); y is checked against
        the fitted labels as partial_fit checks it, without changing them."""
        check_is_fitted(self)
        _array_api.refuse("The full-batch objective (loss_gradient and the "
                          "second-order tools)", X)
        ensure_checked(self)
        model = self._fitted_model()
        refuse_batch_norm(model)
        dtype = model.flat.dtype if dtype is None else dtype
        s = replace(fit_settings(self), incremental=True, warm_start=False)
        self._check_output(self.out_activation_, self.__dict__, s)
        d = self._fit_data(s, X, y, sample_weight, self.__dict__, False,
                           dtype=dtype)
        problem = Objective(self._network(), model.units, d.X, d.Y,
                            d.sample_weight, dtype, s.alpha, s.l1,
                            BACKENDS[s.backend])
        return problem, model.flat.astype(dtype, copy=False)

    def _check_output(self, out_activation, labels, s):
        """The fitted output must be the one loss s.loss needs, when a fit
        continues the network or a tool evaluates its loss (set_params may
        have changed the loss since; predict does not read it)."""
        needed = self._output_activation(labels, s)
        if needed != out_activation:
            raise ValueError(
                f"The network was fitted with out_activation_="
                f"{out_activation!r}, and loss={s.loss!r} needs {needed!r}: "
                "fit anew (warm_start=False) to change the loss, or set the "
                "loss back."
            )

    def _check_continued(self, attrs, labels):
        """Check the fitted state a warm or incremental fit continues from,
        with the labels this call sets (partial_fit's classes)."""
        if not labels:
            ensure_checked(self)
            return
        state = type(self).__new__(type(self))
        state.__dict__.update(attrs, **labels)
        check_fitted_state(state)

    def _validated_Xy(self, X, y, reset, space=None):
        """X and y validated as scikit-learn's MLP does; the object X_val is
        checked against (self, or on a first pass a probe holding the new
        n_features_in_ and feature names) and those attributes to commit."""
        kwargs = dict(accept_sparse=["csr", "csc"], multi_output=True,
                      dtype=_float_dtypes(space), **self._y_kwargs)
        ref, fitted = self, {}
        if reset:
            # validate_data records the input's width and feature names on
            # the estimator it is given: give it a probe, commit them later.
            ref = type(self).__new__(type(self))
            X, y = validate_data(ref, X, y, reset=True, **kwargs)
            fitted = {name: ref.__dict__.get(name, _DELETE)
                      for name in ("n_features_in_", "feature_names_in_")}
        else:
            X, y = validate_data(self, X, y, reset=False, **kwargs)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y, ref, fitted

    def _validated_val_set(self, X_val, y_val, sample_weight_val, ref, labels,
                           n_outputs, dtype, space=None):
        """A user's validation set as the triple the early-stopping code takes."""
        X_val = validate_data(
            ref, X_val, accept_sparse=["csr", "csc"], reset=False,
            dtype=_float_dtypes(space),
        )
        Y_val = self._encode_targets(y_val, labels)
        Y_val = Y_val.reshape(Y_val.shape[0], -1)
        if Y_val.shape != (X_val.shape[0], n_outputs):
            raise ValueError(
                f"y_val must have shape ({X_val.shape[0]}, {n_outputs}) or "
                f"({X_val.shape[0]},) like y, got {np.shape(y_val)}."
            )
        sw_val = check_sample_weight(sample_weight_val, X_val.shape[0], dtype)
        return X_val, Y_val, sw_val

    def _weigh_classes(self, Y, sample_weight, class_weight, labels, dtype):
        """sample_weight times the class weights (classifier only)."""
        return sample_weight

    def _check_target_range(self, y, s, name="y"):
        """Targets outside the loss's domain raise (regressor only)."""

    # ------------------------------------------------------------------
    # the fitted model

    def _fitted_model(self):
        """The Model record behind the fitted attributes (of NumPy arrays:
        the tools that read it run on NumPy)."""
        _array_api.refuse("This method", coefs=self.__dict__.get("coefs_"))
        return Model.of(self.__dict__)

    def _network(self):
        """What the fitted weights compute, with the current activation."""
        return Network(self.activation, self.out_activation_,
                       loss_name(self.out_activation_, self.loss),
                       loss_param(self))

    # ------------------------------------------------------------------
    # prediction

    def _predictor(self, memo):
        """(model, plan_for, passes) of the fitted state whose memo
        (ensure_checked's) this is, derived once while the state stays the
        one checked; passes: forward's bound one-thread entries, or None."""
        cached = memo.get("predictor")
        if cached is not None:
            return cached
        model = self._fitted_model()
        network = self._network()
        plan_for = _plans_by_rows({}, lambda rows: network.plan(
            model.units, rows, batch_norm=model.batch_norm))

        # Only a model the attributes view: in-place edits of coefs_ show in
        # it. One packed from replaced arrays is a copy, packed per call
        # (and gets no bound passes).
        if model is not self.__dict__.get("_model"):
            return model, plan_for, None
        cached = memo["predictor"] = model, plan_for, {}
        return cached

    def _forward_output(self, X, memo):
        """Output-layer activations of the fitted network for validated X."""
        model, plan_for, passes = self._predictor(memo)
        return forward(X, model, plan_for, BACKENDS[self.backend], self.n_jobs,
                       passes=passes)

    def _checked_input(self, X):
        """(X, memo) as predict and transform take X: a plain float array of
        the fitted width as it is (validate_data would pass it through, at
        ten times a small predict's cost), anything else through
        validate_data; memo is ensure_checked's for the fitted state."""
        if not self._is_plain_input(X):
            X = self._validated_X(X)
        return X, ensure_checked(self)

    def _validated_output(self, X, method="predict"):
        space = _array_api.predict_space(self, X, method)
        if space is not None:
            return _array_api.fitted_output(self, space, X)
        X, memo = self._checked_input(X)
        out = self._forward_output(X, memo)
        if not BACKENDS[self.backend].all_finite(out.reshape(-1)):
            raise non_finite_error("The network's output", self._fitted_model().flat)
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
        space = _array_api.predict_space(self, X, "transform")
        if space is None:
            X, memo = self._checked_input(X)
        if len(self.coefs_) < 2:
            raise ValueError(
                "transform returns the last hidden layer's activations; this "
                "network has no hidden layer (hidden_layer_sizes=())."
            )
        if space is not None:
            return _array_api.fitted_output(self, space, X, len(self.coefs_) - 1)
        model, plan_for, passes = self._predictor(memo)
        units = model.units[:-1]
        hidden_plan_for = memo.get("hidden_plan_for")
        if hidden_plan_for is None:  # offsets only: safe to keep for the state
            acts = hidden_activations(self.activation, len(units) - 1)
            # The network without its output layer, batch norm on every layer
            # of it, reading the whole model's buffers (no copy, so edits show).
            flags = (model.batch_norm,) * (len(units) - 1)
            hidden_plan_for = memo["hidden_plan_for"] = _plans_by_rows(
                {}, lambda rows: reading_params_of(make_plan(
                    units, acts[:-1], acts[-1], "squared_error", rows, False,
                    batch_norm=flags), plan_for(rows)))
        backend = BACKENDS[self.backend]
        if passes is not None:  # the hidden layers' own, by row count
            passes = memo.setdefault("hidden_passes", {})
        features = forward(X, model, hidden_plan_for, backend, self.n_jobs,
                           n_out=units[-1], passes=passes)
        if not backend.all_finite(features.reshape(-1)):
            raise non_finite_error("The last hidden layer's activations "
                                   "(transform)", model.flat)
        return features

    @property
    def _n_features_out(self):
        # Width of the last hidden layer: names for get_feature_names_out.
        return self.coefs_[-1].shape[0]

    def _validated_X(self, X):
        """X checked against the fitted model, as predict takes it."""
        check_is_fitted(self)
        ensure_checked(self)
        return validate_data(
            self, X, accept_sparse=["csr", "csc"], reset=False,
            dtype=(np.float64, np.float32),
        )

    def _is_plain_input(self, X):
        """True for X that validate_data would pass through unchanged.

        That is a finite float ndarray of the fitted width for a model fitted
        without feature names. Checking it directly costs about a
        microsecond; validate_data dominates single-row predict otherwise.
        Anything else (a NaN or infinity included) takes the full
        validation, which raises scikit-learn's errors.
        """
        d = self.__dict__
        return (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.dtype in _FLOATS  # native byte order only
            and X.shape[0] > 0
            and X.shape[1] == d.get("n_features_in_")
            and "coefs_" in d
            and "feature_names_in_" not in d
            and all_finite_float(X)
        )

    # ------------------------------------------------------------------
    # persistence

    def __getstate__(self):
        # coefs_ and intercepts_ carry the weights; the record is rebuilt.
        # Loading checks them as NumPy arrays: refuse others at saving time,
        # rather than write a file that cannot be loaded.
        _array_api.refuse("Pickling", coefs=self.__dict__.get("coefs_"))
        with _COMMIT:
            state = dict(super().__getstate__())
        state.pop("_model", None)
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
            # A model file is user input: check it before building on it.
            check_fitted_state(self)
            self.__dict__.update(self._fitted_model().attributes())
            trust(self)

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
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


# A fitted attribute a commit removes (feature_names_in_ after a refit on
# data without names, as validate_data would).
_DELETE = object()


class _FitData(NamedTuple):
    """The first half of a fit (``_BaseMLP._fit_data``): validated X and y,
    the targets Y and sample weights in the fit's dtype, the label
    attributes it sets, the object a validation set is checked against and
    the input attributes a first pass commits."""

    X: object
    y: np.ndarray
    Y: np.ndarray
    sample_weight: object
    labels: dict
    ref: object
    fitted: dict


def _new_model(units, s, random_state, dtype):
    """The first model of a fit: Glorot-initialised weights (scikit-learn's
    draws), then batch norm's unit scales and zero shifts."""
    flat = glorot_init(units, s.activation, random_state, dtype)
    running = None
    if s.batch_norm:
        bn_params, running = init_batch_norm(units, dtype)
        flat = np.concatenate([flat, bn_params])
    return Model(flat, units, running)


def _kept_model(attrs, units, batch_norm):
    """A copy of the fitted model a warm or incremental fit continues (a
    failed fit leaves the original as it was), after checking it fits."""
    model = Model.of(attrs)
    if model.units != units:
        raise ValueError(
            f"The network has layer sizes {list(model.units)} but this fit needs "
            f"{list(units)}; refit without warm_start to change the architecture."
        )
    if model.batch_norm != batch_norm:
        raise ValueError(
            f"The network was fitted with batch_norm={model.batch_norm}; refit "
            "without warm_start to change it."
        )
    return model.copy()


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
        + _docs.PARAMETERS
        + """
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, as in LogisticRegression: a dict
        {class_label: weight} (classes not in it weigh 1), or 'balanced' for
        n_samples / (n_classes * np.bincount(y)) computed on the labels of
        each fit. Multiplied into sample_weight. Single-output targets only;
        partial_fit takes a dict only. Not in scikit-learn's MLP.
"""
        + _docs.BATCH_NORM
        + """
    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels for each output.
"""
        + _docs.ATTRIBUTES
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

    def _targets(self, y, attrs, s, classes=None):
        """The binarized targets of y and the label attributes a fit commits
        ({} when the fitted ones stay), after checking y against them."""
        labels = self._partial_fit_classes(y, classes, attrs) if s.incremental else {}
        current = {**attrs, **labels}
        if current.get("classes_") is None or (not s.warm_start and not s.incremental):
            binarizer = LabelBinarizer().fit(y)
            labels = {"_label_binarizer": binarizer, "classes_": binarizer.classes_}
            Y = _known_labels_encoded(y, binarizer, binarizer.classes_)
            if Y is not None:
                return Y, labels
        else:
            binarizer, fitted = current["_label_binarizer"], current["classes_"]
            Y = _known_labels_encoded(y, binarizer, fitted)
            if Y is not None and not (s.warm_start and not s.incremental):
                return Y, labels
            found = unique_labels(y)
            if s.warm_start and not s.incremental:
                if set(found) != set(fitted):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {fitted}, `y` has {found}"
                    )
            elif len(np.setdiff1d(found, fitted, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {fitted}. 'y' has {found}."
                )
        Y = binarizer.transform(y)
        return Y.reshape(Y.shape[0], -1), labels

    def _partial_fit_classes(self, y, classes, attrs):
        """The label attributes partial_fit's classes argument sets (on the
        first call), after checking it against the fitted ones."""
        fitted = attrs.get("classes_")
        if fitted is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is None:
            return {}
        if fitted is not None:
            if not np.array_equal(fitted, unique_labels(classes)):
                raise ValueError(
                    "`classes=%r` is not the same as on last call "
                    "to partial_fit, was: %r" % (classes, fitted)
                )
            return {}
        binarizer = LabelBinarizer()
        if y is not None and type_of_target(y, input_name="y").startswith(
            "multilabel"
        ):
            binarizer.fit(y)
        else:
            binarizer.fit(classes)
        return {"_label_binarizer": binarizer, "classes_": unique_labels(classes)}

    def _output_activation(self, labels, s):
        multiclass = labels["_label_binarizer"].y_type_ == "multiclass"
        return "softmax" if multiclass else "logistic"

    def _encode_targets(self, y, labels):
        """Validation labels as the binarized targets the network fits."""
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y_val")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y)
        unknown = np.setdiff1d(unique_labels(y), labels["classes_"])
        if len(unknown):
            raise ValueError(f"y_val has classes not in `self.classes_`: {unknown}.")
        return labels["_label_binarizer"].transform(y)

    def _weigh_classes(self, Y, sample_weight, class_weight, labels, dtype):
        # As LogisticRegression: weights from compute_class_weight on this
        # fit's labels, multiplied into sample_weight.
        if class_weight is None:
            return sample_weight
        binarizer, classes = labels["_label_binarizer"], labels["classes_"]
        if binarizer.y_type_ == "multilabel-indicator":
            raise ValueError("class_weight is not supported for multilabel targets.")
        index = Y[:, 0].astype(np.intp) if Y.shape[1] == 1 else Y.argmax(axis=1)
        weights = compute_class_weight(
            class_weight, classes=classes, y=classes[index]
        ).astype(dtype)[index]
        if sample_weight is not None:
            weights *= sample_weight
        if not np.any(weights > 0):
            raise ValueError(
                "Sample weights times class weights must contain at least one "
                "non-zero number."
            )
        return np.ascontiguousarray(weights)

    def _decode(self, output, labels=None):
        # LabelBinarizer.inverse_transform's rules for the common cases,
        # without its validation overhead (a fifth of single-row predict).
        labels = self.__dict__ if labels is None else labels
        binarizer, classes = labels["_label_binarizer"], labels["classes_"]
        if not isinstance(output, np.ndarray):
            return _array_api.decode_classes(output, classes)
        y_type = binarizer.y_type_
        if y_type == "multiclass":
            return classes.take(output.argmax(axis=1), mode="clip")
        if y_type == "binary" and len(classes) == 2:
            return classes[(output.ravel() > 0.5).astype(int)]
        if output.shape[1] == 1:
            output = output.ravel()
        return binarizer.inverse_transform(output)

    def _score_function(self, y, y_pred, sample_weight):
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def score(self, X, y, sample_weight=None):
        """Return the mean accuracy on the given test data and labels.

        scikit-learn's ``ClassifierMixin.score``: in multi-label
        classification, the subset accuracy.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Test samples.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True labels for `X`.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            Mean accuracy of ``self.predict(X)`` w.r.t. `y`.
        """
        y_pred = self.predict(X)
        if (sample_weight is None and type(y) is np.ndarray
                and y.dtype.kind in "iu" and y.ndim == y_pred.ndim == 1
                and y_pred.dtype.kind in "iu" and len(y) == len(y_pred)):
            # accuracy_score's value for integer labels on both sides (binary
            # or multiclass: nothing its target checks refuse) without those
            # checks, which cost twenty single-row predicts.
            return float(np.average(y == y_pred))
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
        return self._partial_fit(X, y, sample_weight, classes=classes)

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
        if not isinstance(y_prob, np.ndarray):
            return _array_api.log(y_prob)
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
        y_pred = self._validated_output(X, "predict_proba")
        if self.n_outputs_ == 1 and not isinstance(y_pred, np.ndarray):
            return _array_api.binary_proba(y_pred)
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
    the squared error or the Poisson deviance (or, beyond scikit-learn, the
    absolute error, the Huber or pinball loss or the gamma deviance) with
    L-BFGS, SGD or Adam, or (beyond scikit-learn) Newton, Adagrad, RMSprop,
    Adadelta, AdamW, Adamax or Nadam, with learning-rate schedules and
    gradient clipping for every stochastic solver.

    Parameters
    ----------
"""
        + _docs.REGRESSION_LOSS
        + _docs.PARAMETERS
        + _docs.LOSS_PARAMETERS
        + _docs.BATCH_NORM
        + """
    Attributes
    ----------"""
        + _docs.ATTRIBUTES
        + """
    See Also
    --------
    MLPClassifier : Multi-layer Perceptron classifier.
    sklearn.neural_network.MLPRegressor : The estimator this one replaces.

    Notes
    -----
    Unlike scikit-learn's, ``partial_fit`` is absent with solver='lbfgs'
    (scikit-learn's check is broken and silently runs a full fit), and
    negative targets with loss='poisson' raise a ValueError. ``score`` is
    R^2 whatever the loss (scikit-learn's convention); ``loss_curve_`` and
    ``loss_`` report the chosen loss.

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
        huber_delta=None,
        quantile=None,
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
        self.huber_delta = huber_delta
        self.quantile = quantile
        self.batch_norm = batch_norm

    _y_kwargs = {"y_numeric": True}

    def _targets(self, y, attrs, s, classes=None):
        """y as the network's (n_samples, n_outputs) targets; no labels."""
        self._check_target_range(y, s)
        return y.reshape(y.shape[0], -1), {}

    def _check_target_range(self, y, s, name="y"):
        """Poisson's targets are >= 0, gamma's > 0 (y_val's too)."""
        if s.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                f"Some value(s) of {name} are negative which is not allowed for "
                "Poisson regression (loss='poisson')."
            )
        if s.loss == "gamma" and not np.all(y > 0):
            raise ValueError(
                f"Some value(s) of {name} are not positive (<= 0 or NaN), which "
                f"is not allowed for Gamma regression (loss='gamma'): {name} "
                "must be > 0."
            )

    def _output_activation(self, labels, s):
        return LOSS[s.loss].output

    def _encode_targets(self, y, labels):
        return check_array(
            y, ensure_2d=False, dtype=(np.float64, np.float32), input_name="y_val"
        )

    def _decode(self, output, labels=None):
        if output.shape[1] != 1:
            return output
        return output.ravel() if isinstance(output, np.ndarray) else output[:, 0]

    def _score_function(self, y, y_pred, sample_weight):
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def score(self, X, y, sample_weight=None):
        """Return the coefficient of determination of the prediction.

        scikit-learn's ``RegressorMixin.score``: :math:`R^2` (best 1.0, may
        be negative), the outputs' uniform average.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Test samples.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True values for `X`.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            :math:`R^2` of ``self.predict(X)`` w.r.t. `y`.
        """
        y_pred = self.predict(X)
        if (sample_weight is None and type(y) is np.ndarray and y.ndim == 1
                and y.dtype in _FLOATS and y.flags.c_contiguous
                and y_pred.ndim == 1 and len(y) == len(y_pred) > 1
                and all_finite_float(y)):
            # r2_score's arithmetic on its (n, 1) columns in its dtype, for
            # finite 1-D float targets (nothing its checks refuse), without
            # those checks, which cost twenty single-row predicts.
            dtype = np.result_type(y, y_pred)
            y_true = y.astype(dtype, copy=False).reshape(-1, 1)
            y_pred = y_pred.astype(dtype, copy=False).reshape(-1, 1)
            num = np.sum(1.0 * (y_true - y_pred) ** 2, axis=0)
            den = np.sum(1.0 * (y_true - np.average(y_true, axis=0)) ** 2, axis=0)
            if num[0] == 0:
                return 1.0  # force_finite: perfect predictions
            if den[0] == 0:
                return 0.0  # force_finite: constant y, imperfect predictions
            return float(np.average(1 - num / den))
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
        return self._partial_fit(X, y, sample_weight)
