"""The full-batch objective and the drivers that minimise it (lbfgs, newton).

``Objective`` is the training objective of one network on (X, Y): the
engine's full-batch loss and gradient, and its exact Hessian-vector
products. lbfgs, newton and the second-order tools (``loss_gradient``,
``hessian``, ...) all evaluate it; ``train`` runs ``scipy.optimize`` on it.
"""

import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from fastbp._finite import KEPT, divergence
from fastbp._forward import blas_threads
from fastbp._network import unpack
from fastbp._state import Model


class Objective:
    """The full-batch objective of a network of given widths on (X, Y).

    The engine reports the weighted mean data loss plus (alpha / 2 ||W||^2 +
    l1 ||W||_1) / sum(sample_weight), the sample weights including the
    classifier's class weights, and its gradient, which every solver
    follows. ``objective`` is the function that gradient belongs to: the
    reported loss except for squared error with n_outputs > 1, where the
    reported loss (the ``loss_`` convention, scikit-learn's) averages the
    data term over outputs while the gradient is that of their sum.
    L1's curvature is zero wherever it is differentiable, so Hessian-vector
    products leave it out.

    With batch norm (``running`` given), every evaluation normalizes with
    the whole data's statistics at the evaluated point and writes their
    mean and unbiased variance into running.
    """

    def __init__(self, network, units, X, Y, sample_weight, dtype, alpha, l1,
                 backend, running=None):
        self.network, self.units, self.backend = network, tuple(units), backend
        self.X, self.csr = backend.kernel_input(X, dtype)
        self.Y = backend.targets(Y, dtype)
        self.sw = sample_weight
        self.running = running
        # Threads of loss_grad: 1 where Hessian-vector products reuse its
        # workspace (newton, the second-order tools); lbfgs's train sets more.
        self.n_threads = 1
        self.plan = network.plan(units, max(1, X.shape[0]),
                                 batch_norm=running is not None)
        self.work = backend.workspace(self.plan, dtype)
        self.rwork = backend.workspace(self.plan, dtype)
        self.params = np.empty(self.plan.n_params, dtype=dtype)
        self.grad = np.empty(self.plan.n_params, dtype=dtype)
        # True while work holds the compiled forward and backward passes at
        # params: Hessian-vector products there reuse them.
        self.ready = False
        self.alpha, self.l1 = float(alpha), float(l1)
        self.sw_sum = (X.shape[0] if sample_weight is None else float(
            np.sum(backend.host(sample_weight), dtype=np.float64)))
        self.scale = Y.shape[1] if network.loss == "squared_error" else 1

    def hold_blas(self):
        # Every pass's products on one BLAS thread (results independent of
        # BLAS's threading; threaded BLAS on these products mostly spins).
        return blas_threads(self.Y.shape[0], self.units)

    def _load(self, params):
        if not np.array_equal(self.params, params):
            self.params[:] = params
            self.ready = False
        return self.params

    def _penalty(self, params):
        coefs, _ = unpack(params, self.units)
        sq = sum(float(np.dot(W.ravel(), W.ravel())) for W in coefs)
        ab = sum(float(np.abs(W).sum()) for W in coefs)
        return (0.5 * self.alpha * sq + self.l1 * ab) / self.sw_sum

    def objective(self, reported, params):
        """The objective from the loss the engine reports at params."""
        if self.scale == 1:
            return reported
        penalty = self._penalty(params)
        return self.scale * (reported - penalty) + penalty

    def reported(self, objective, params):
        """The inverse of objective: the loss_ convention."""
        if self.scale == 1:
            return objective
        penalty = self._penalty(params)
        return (objective - penalty) / self.scale + penalty

    def engine_loss_grad(self, params):
        """(reported loss, gradient) at params; the gradient is a buffer
        reused by the next call."""
        params = self._load(params)
        args = (self.plan, self.X, self.csr, self.Y, self.sw, params, self.grad,
                self.work, self.alpha, self.l1)
        # An interrupted pass (Ctrl-C between row chunks) leaves work half
        # written: not ready until the pass returns.
        self.ready = False
        with self.hold_blas():
            if self.running is None and self.n_threads == 1:
                loss = self.backend.loss_grad(*args)
            else:
                loss = self.backend.loss_grad(*args, 0, self.running,
                                              self.n_threads)
        # A threaded pass leaves its rows' work in per-thread buffers.
        self.ready = self.backend.reuses_work and self.n_threads == 1
        return loss, self.grad

    def loss_grad(self, params):
        """(objective, gradient) at params, in the model's dtype."""
        loss, grad = self.engine_loss_grad(params)
        return self.objective(loss, self.params), grad.copy()

    def hvp(self, params, v):
        """Exact Hessian of the objective at params times v."""
        params = self._load(params)
        v = np.ascontiguousarray(v, dtype=params.dtype)
        out = np.empty_like(params)
        prepared, self.ready = self.ready, False  # as in engine_loss_grad
        with self.hold_blas():
            self.backend.hessian_vector_product(
                self.plan, self.X, self.csr, self.Y, self.sw, params, v, out,
                self.work, self.rwork, self.alpha, prepared,
            )
        self.ready = self.backend.reuses_work
        return out


def train(s, model, history, problem, tasks, n_threads):
    """Minimise problem from model's weights with lbfgs or newton (s.solver),
    in place on model and history; lbfgs's passes on n_threads threads."""
    if s.solver == "lbfgs":
        problem.n_threads = n_threads
    # One hold for the whole fit (the passes' own holds then nest for free).
    with problem.hold_blas():
        _minimize(s, model, history, problem, tasks)


def _minimize(s, model, history, problem, tasks):
    f64 = np.float64
    if s.solver == "newton":
        def fun(x):
            loss, grad = problem.loss_grad(x)
            return loss, grad.astype(f64)

        method = {"method": "trust-ncg",
                  "hessp": lambda x, v: problem.hvp(x, v).astype(f64),
                  "options": {"maxiter": s.max_iter, "gtol": s.tol}}
        reported = problem.reported
    else:
        def fun(x):
            loss, grad = problem.engine_loss_grad(x)
            return loss, grad.astype(f64)

        method = {"method": "L-BFGS-B",
                  "options": {"maxfun": s.max_fun, "maxiter": s.max_iter,
                              "gtol": s.tol}}
        reported = None
    x0 = model.flat.astype(f64)
    # The last accepted iterate; fun is known at x0 once scipy evaluated it.
    last = {"x": model.flat.copy(), "nit": 0, "fun": None, "stop": False}

    def at(x):
        return Model(x.astype(model.flat.dtype), model.units, problem.running)

    def first(x):
        loss, grad = fun(x)
        if last["fun"] is None:
            last["fun"] = loss if reported is None else reported(loss, x)
        return loss, grad

    def callback(intermediate_result):
        last["x"] = intermediate_result.x.copy()
        last["nit"] += 1
        last["fun"] = intermediate_result.fun
        if reported is not None:
            last["fun"] = reported(last["fun"], last["x"])
            history.loss_curve.append(float(last["fun"]))
        if s.verbose:
            print("Iteration %d, loss = %.8f" % (last["nit"], last["fun"]))
        # With batch norm, running holds the statistics of the last
        # evaluation: the accepted point x.
        current = at(last["x"])
        history.n_iter = last["nit"]
        last["stop"] = tasks.end(current, history)
        tasks.begin(current, history)
        if last["stop"]:
            raise StopIteration

    tasks.begin(model, history)
    try:
        result = scipy.optimize.minimize(first, x0, jac=True, callback=callback,
                                         **method)
    except KeyboardInterrupt:
        if last["fun"] is None:
            raise  # nothing was evaluated: the fit fails, the old model stays
        warnings.warn("Training interrupted by user.")
        model.flat[:] = last["x"]
        history.n_iter = last["nit"]
        history.loss = float(last["fun"])
    else:
        history.n_iter = min(result.nit, s.max_iter)
        if result.status != 0 and not last["stop"]:
            _warn_not_converged(s, history.n_iter, result)
        history.loss = float(result.fun)
        if reported is not None:
            history.loss = float(reported(result.fun, result.x))
        model.flat[:] = result.x
    tasks.close_empty()
    finite = problem.backend.all_finite(model.flat)
    if not (np.isfinite(history.loss) and finite):
        raise ValueError(divergence(history.n_iter, history.loss, None, finite) + KEPT)
    if problem.running is not None:
        # The statistics at the result (problem.running is model.running).
        problem.engine_loss_grad(model.flat)


def _warn_not_converged(s, n_iter, result):
    msg = (
        f"{s.solver} failed to converge after {n_iter} "
        f"iteration(s) (status={result.status}):\n{result.message}\n"
    )
    if n_iter == s.max_iter:
        msg += (
            "\nIncrease the number of iterations to improve the "
            f"convergence (max_iter={s.max_iter})."
        )
    msg += (
        "\nYou might also want to scale the data as shown in:\n"
        "    https://scikit-learn.org/stable/modules/preprocessing.html"
    )
    warnings.warn(msg, ConvergenceWarning, stacklevel=4)
