"""Second-order tools: gradients, Hessian-vector products, Hessians, Jacobians.

Each tool is a function of the full-batch objective that lbfgs and newton
minimize (``fastbp._full_batch.Objective``) and the point it is evaluated
at. ``SecondOrderMixin`` offers them on both estimators (``loss_gradient``,
``hessian_vector_product``, ``hessian``, ``jacobian``,
``unflatten_params``), each on the objective the estimator's ``_objective``
builds from the first half of a fit. The products run in the engine
(``_curvature``, or the twin with backend="numpy"). ``check_gradients``
compares backpropagation with central finite differences.

Every vector over the parameters is in the order of the flat parameter
buffer: ``coefs_[0].ravel()``, ..., ``coefs_[-1].ravel()``, then
``intercepts_[0]``, ..., ``intercepts_[-1]`` (scikit-learn's packing order).
"""

from dataclasses import dataclass

import numpy as np
from sklearn.utils.validation import check_is_fitted

from fastbp._backend import BACKENDS
from fastbp._finite import require_finite
from fastbp._fitted_state import ensure_checked
from fastbp._inputs import as_kernel_input
from fastbp._network import unpack

# Largest network hessian() builds: n_params**2 entries, n_params products.
MAX_HESSIAN_PARAMS = 2000
# Rows per Jacobian pass: bounds the workspace, as predict does.
_JACOBIAN_ROWS = 1024
# What the objective's inputs are, for its non-finite errors.
_XY = "X or y"


def refuse_batch_norm(model):
    if model.batch_norm:
        raise ValueError(
            "The second-order tools do not support batch_norm=True: their "
            "derivatives ignore the normalization."
        )


# The tools, as functions of the objective and the point it is evaluated at.

def loss_gradient(problem, flat):
    """(objective, gradient) at flat, both checked finite."""
    loss, grad = require_finite(problem.loss_grad(flat),
                                "The loss or its gradient", flat, _XY)
    return float(loss), grad


def hessian_vector_product(problem, flat, v):
    """The exact Hessian at flat times v (checked: shape, numbers, finite)."""
    v = np.asarray(v)
    if v.shape != flat.shape or not np.issubdtype(v.dtype, np.number):
        raise ValueError(
            f"v must be a numeric vector of shape ({flat.size},) (n_params), "
            f"got shape {v.shape}."
        )
    if not np.isfinite(v).all():
        raise ValueError("v must be finite.")
    return require_finite([problem.hvp(flat, v)],
                          "The Hessian-vector product", flat, "X, y or v")[0]


def hessian(problem, flat):
    """The exact Hessian at flat, column by column from unit-vector products."""
    if flat.size > MAX_HESSIAN_PARAMS:
        raise ValueError(
            f"The network has {flat.size} parameters; hessian() builds "
            f"networks of at most MAX_HESSIAN_PARAMS={MAX_HESSIAN_PARAMS}. "
            "Use hessian_vector_product for larger ones."
        )
    H = np.empty((flat.size, flat.size), dtype=flat.dtype)
    e = np.zeros_like(flat)
    for i in range(flat.size):
        e[i] = 1
        H[:, i] = problem.hvp(flat, e)
        e[i] = 0
    return require_finite([H], "The Hessian", flat, _XY)[0]


def jacobian(network, model, X, backend):
    """d output / d input of model for validated X: (n_samples, n_outputs,
    n_features), in passes of at most _JACOBIAN_ROWS rows."""
    refuse_batch_norm(model)
    flat, units = model.flat, model.units
    X_dense, csr = as_kernel_input(X, flat.dtype)
    n_samples = X.shape[0]
    plan = network.plan(units, max(1, min(n_samples, _JACOBIAN_ROWS)))
    work = np.empty(plan.work_size, dtype=flat.dtype)
    J = np.empty((n_samples, units[-1], units[0]), dtype=flat.dtype)
    backend.jacobian(plan, X_dense, csr, flat, work, J)
    return require_finite([J], "The Jacobian", flat)[0]


def gradient_check(problem, flat, eps, floor):
    """Backpropagation against central differences at flat (float64)."""
    _, gradient = problem.loss_grad(flat)
    numerical = np.empty_like(flat)
    for i in range(flat.size):
        w = flat.copy()
        w[i] += eps
        plus = problem.loss_grad(w)[0]
        w[i] -= 2 * eps
        numerical[i] = (plus - problem.loss_grad(w)[0]) / (2 * eps)
    require_finite([gradient, numerical], "The gradient or its finite-difference "
                   "estimate", flat, _XY)
    error = np.abs(gradient - numerical) / np.maximum(
        np.maximum(np.abs(gradient), np.abs(numerical)), floor
    )
    coefs, intercepts = unpack(error, problem.units)
    return GradientCheck([float(e.max()) for e in coefs],
                         [float(e.max()) for e in intercepts],
                         float(error.max()), gradient, numerical)


class SecondOrderMixin:
    """Derivatives of a fitted network; mixed into the estimators, which
    give ``_objective(X, y, sample_weight, dtype=None)`` (the objective and
    the fitted weights, ``fastbp._full_batch.Objective``)."""

    def loss_gradient(self, X, y, sample_weight=None):
        """The training objective on (X, y) and its gradient at the fitted weights.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets, encoded as in fit (class labels for the classifier).

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        loss : float
            Weighted mean loss plus alpha / (2 * sum(sample_weight)) times
            the squared norm of the coefficients and l1 / sum(sample_weight)
            times their absolute sum (intercepts are not penalized); the
            classifier's class_weight multiplies sample_weight as in fit.
            For squared error with n_outputs > 1 the data term
            is summed, not averaged, over outputs: this is the function whose
            gradient every solver follows (as in scikit-learn), while
            ``loss_`` reports the average.

        gradient : ndarray of shape (n_params,)
            In the order of the flat parameter buffer: every ``coefs_[i]``
            raveled (row-major), then every ``intercepts_[i]``;
            ``unflatten_params`` splits it.
        """
        return loss_gradient(*self._objective(X, y, sample_weight))

    def hessian_vector_product(self, X, y, v, sample_weight=None):
        """Exact Hessian of the objective of ``loss_gradient`` times v.

        Computed by Pearlmutter's R-operator (one forward and one backward
        pass more than the gradient), not by finite differences.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        v : array-like of shape (n_params,)
            A direction in the flat parameter order (see ``loss_gradient``).
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        Hv : ndarray of shape (n_params,)
        """
        problem, flat = self._objective(X, y, sample_weight)
        return hessian_vector_product(problem, flat, v)

    def hessian(self, X, y, sample_weight=None):
        """The exact Hessian of the objective of ``loss_gradient``.

        Built column by column from ``hessian_vector_product`` with unit
        vectors: n_params products, n_params**2 entries. Networks with more
        than ``fastbp.MAX_HESSIAN_PARAMS`` (2000) parameters raise a
        ValueError; use ``hessian_vector_product`` there.

        Returns
        -------
        H : ndarray of shape (n_params, n_params)
            Rows and columns in the flat parameter order.
        """
        return hessian(*self._objective(X, y, sample_weight))

    def jacobian(self, X):
        """Derivative of the model's output with respect to its input.

        The output is ``predict_proba`` for the classifier and ``predict``
        for the regressor: input saliency for each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        J : ndarray of shape (n_samples, n_outputs, n_features)
            J[i, k, j] = d output[i, k] / d X[i, j]; for a binary classifier
            n_outputs is 2 (both columns of predict_proba), for a regressor
            with one target it is 1.
        """
        X = self._validated_X(X)
        J = jacobian(self._network(), self._fitted_model(), X,
                     BACKENDS[self.backend])
        if self._is_classifier() and self.n_outputs_ == 1:
            J = np.concatenate([-J, J], axis=1)  # predict_proba is [1 - p, p]
        return J

    def unflatten_params(self, vector):
        """Split a flat parameter-order vector into coefs_/intercepts_ shapes.

        Parameters
        ----------
        vector : array-like of shape (n_params,)
            For example the gradient of ``loss_gradient``.

        Returns
        -------
        coefs : list of ndarray
            coefs[i] has the shape of coefs_[i] (views into vector).
        intercepts : list of ndarray
            intercepts[i] has the shape of intercepts_[i].
        """
        check_is_fitted(self)
        ensure_checked(self)
        units = self._fitted_model().units
        vector = np.asarray(vector)
        n_params = sum(c.size + b.size for c, b in zip(self.coefs_, self.intercepts_))
        if vector.shape != (n_params,):
            raise ValueError(
                f"vector must have shape ({n_params},) (n_params), got "
                f"{vector.shape}."
            )
        return unpack(vector, units)


@dataclass
class GradientCheck:
    """What ``check_gradients`` found.

    Attributes
    ----------
    coefs_errors : list of float
        Worst relative error over the entries of each coefs_[i].
    intercepts_errors : list of float
        Worst relative error over the entries of each intercepts_[i].
    max_error : float
        The worst of all.
    gradient : ndarray of shape (n_params,)
        The backpropagated gradient (flat parameter order).
    numerical : ndarray of shape (n_params,)
        The central-difference gradient.
    """

    coefs_errors: list
    intercepts_errors: list
    max_error: float
    gradient: np.ndarray
    numerical: np.ndarray

    def __str__(self):
        lines = ["layer  coefs_ rel. error  intercepts_ rel. error"]
        for i, (c, b) in enumerate(zip(self.coefs_errors, self.intercepts_errors)):
            lines.append(f"{i:5d}  {c:17.3e}  {b:22.3e}")
        return "\n".join(lines + [f"worst: {self.max_error:.3e}"])


def check_gradients(estimator, X, y, sample_weight=None, eps=1e-5, floor=1e-6):
    """Compare backpropagation with central finite differences.

    At the fitted weights of ``estimator``, every entry of the gradient of
    the objective of ``estimator.loss_gradient(X, y, sample_weight)`` is
    compared with (f(w + eps e_i) - f(w - eps e_i)) / (2 eps). Evaluated in
    float64 whatever the model's dtype; 2 n_params full-batch passes, so
    use small networks and data. ReLU networks are only differentiable
    away from the kink: a hidden pre-activation within eps of 0 shows up as
    a large error.

    Parameters
    ----------
    estimator : fitted fastbp.MLPClassifier or fastbp.MLPRegressor
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : array-like of shape (n_samples,), default=None
    eps : float, default=1e-5
        Finite-difference step (about the cube root of float64's machine
        epsilon balances truncation and rounding: absolute errors of about
        1e-10 for losses of order 1).
    floor : float, default=1e-6
        The relative error of entry i is |g_i - n_i| / max(|g_i|, |n_i|,
        floor), so entries that are both about zero do not count.

    Returns
    -------
    result : GradientCheck
        Worst relative error per layer (``coefs_errors``,
        ``intercepts_errors``), overall (``max_error``), both gradients;
        ``print(result)`` shows a table. 1e-5 or less is a correct
        gradient; 1e-2 or more is a bug (or a ReLU kink).
    """
    if not isinstance(estimator, SecondOrderMixin):
        kind = type(estimator)
        raise TypeError(
            "check_gradients takes a fitted fastbp.MLPClassifier or "
            f"fastbp.MLPRegressor, got {kind.__module__}.{kind.__qualname__}."
        )
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive float, got {eps!r}.")
    if not (np.isfinite(floor) and floor > 0):
        raise ValueError(f"floor must be a positive float, got {floor!r}.")
    return gradient_check(*estimator._objective(X, y, sample_weight, np.float64),
                          eps, floor)
