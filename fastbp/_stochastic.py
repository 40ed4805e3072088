"""The stochastic driver: epochs, early stopping, schedules, divergence.

``train`` runs the epochs of one fit of a stochastic solver on records it is
given (settings, model, history, optimizer state): each epoch it shuffles,
picks the learning rate, calls the engine's ``run_epoch`` (every minibatch,
compiled, GIL released), then records the loss, scores the validation set,
tracks patience and stops. It never touches the estimator.
"""

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from fastbp._finite import KEPT, divergence
from fastbp._forward import blas_threads
from fastbp._kernels import LOSSES
from fastbp._schedules import epoch_learning_rate, follows
from fastbp._settings import Settings
from fastbp._state import Network

# Dropout seeds are drawn from [0, _SEED_END).
_SEED_END = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Target:
    """What the estimator's kind adds to training: the network its outputs
    need, how outputs become predictions, and how those are scored."""

    network: Network
    decode: Callable        # output -> predictions
    score: Callable         # (y, y_pred, sample_weight) -> float
    classifier: bool


class Diverged(Exception):
    """Training diverged; the message says where and why."""


def split_validation(s, X, Y, sample_weight, random_state, target, backend):
    """Hold out validation_fraction of the data, as scikit-learn does.

    Returns X, Y, sample_weight of the training part and the validation
    triple (X_val, Y_val, sw_val).
    """
    # Multilabel targets are not stratified; the others as bool, the form
    # scikit-learn's binarized y has: the same split, and a too-small class
    # is named as scikit-learn names it (['True']).
    stratify = (backend.host(Y).astype(bool)
                if target.classifier and Y.shape[1] == 1 else None)
    arrays = [X, Y] + ([] if sample_weight is None else [sample_weight])
    parts = train_test_split(
        *arrays, random_state=random_state, test_size=s.validation_fraction,
        stratify=stratify,
    ) + [None, None]
    X, X_val, Y, Y_val, sw, sw_val = parts[:6]
    if X_val.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' "
            "or the size of your dataset."
        )
    return X, Y, sw, (X_val, Y_val, sw_val)


class Validation:
    """A validation set and the pass that scores a model on it: encoded
    targets for the loss, decoded ones for the score."""

    def __init__(self, val, target, units, backend, n_jobs, dtype):
        X, Y, sw = val
        # Scored on the host (from the array-API engine, its output moved).
        self.X, self.sw = X, backend.host(sw)
        self.Y = np.ascontiguousarray(backend.host(Y), dtype=dtype)
        self.y = target.decode(self.Y)
        self.target, self.units = target, units
        self.backend, self.n_jobs = backend, n_jobs

    def record(self, h, model):
        """Append the validation score and loss of model to their curves (NaN
        both when its predictions are not finite, as scikit-learn records);
        return them."""
        network = self.target.network
        output = self.backend.validation_output(
            self.X, model, lambda rows: network.plan(
                self.units, rows, batch_norm=model.batch_norm), self.n_jobs)
        score = val_loss = np.nan
        if np.isfinite(output).all():
            score = self.target.score(self.y, self.target.decode(output), self.sw)
            val_loss, _ = self.backend.loss_delta(
                output, self.Y, self.sw, None, LOSSES[network.loss],
                np.empty_like(output), network.loss_param)
        h.validation_scores.append(float(score))
        h.validation_loss_curve.append(float(val_loss))
        return score, val_loss


class Problem:
    """What every epoch of one stochastic fit runs on, built once from the
    fit's settings, model, data and thread count: the engine's input, plan,
    workspace, gradient and row order, and the validation set."""

    def __init__(self, s, model, data, val, target, backend, random_state,
                 n_threads):
        X, Y, sample_weight = data
        if val is None and s.early_stopping:
            X, Y, sample_weight, val = split_validation(
                s, X, Y, sample_weight, random_state, target, backend)
        dtype = backend.host_dtype(model.flat)
        self.val = None if val is None else Validation(
            val, target, model.units, backend, s.n_jobs, dtype)
        self.n_samples = X.shape[0]
        self.batch_size = batch_size_of(s.batch_size, self.n_samples)
        self.X, self.csr = backend.kernel_input(X, dtype)
        self.Y, self.sw = Y, sample_weight
        self.plan = target.network.plan(
            model.units, self.batch_size, gather=s.shuffle and self.csr is None,
            dropout=s.dropout, batch_norm=model.batch_norm)
        self.use_dropout = self.plan.drop.any()
        self.work, self.grad = backend.buffers(self.plan, model.flat)
        self.order = np.arange(self.n_samples, dtype=np.intp)
        self.backend, self.n_threads = backend, n_threads

    def epoch(self, s, model, h, optimizer, random_state):
        """One pass over the data: shuffle, pick the rate, run every
        minibatch (compiled, GIL released), record the loss."""
        if s.shuffle:
            # sklearn.utils.shuffle's permutation, without its checks.
            self.order = self.order[random_state.permutation(self.n_samples)]
        optimizer.learning_rate = epoch_learning_rate(
            s, optimizer.epoch, optimizer.learning_rate, h.t)
        seed = _dropout_seed(random_state, h.t) if self.use_dropout else 0
        loss_sum, optimizer.step = self.backend.run_epoch(
            self.plan, Settings.of(s, optimizer.learning_rate, self.n_threads),
            self.X, self.csr, self.Y, self.sw,
            self.order if s.shuffle else None, self.batch_size,
            model.flat, self.grad, self.work, optimizer.state, optimizer.step,
            seed=seed, running=model.running,
        )
        h.n_iter += 1
        optimizer.epoch += 1
        h.loss = loss_sum / self.n_samples
        h.t += self.n_samples
        h.loss_curve.append(h.loss)
        h.learning_rate_curve.append(optimizer.learning_rate)
        if s.verbose:
            print("Iteration %d, loss = %.8f" % (h.n_iter, h.loss))


class Best:
    """The best model so far (early stopping, restore_best_weights)."""

    def __init__(self, model):
        self.model, self.epoch = model.copy(), None

    def keep(self, model, epoch):
        self.model.flat[:] = model.flat
        if model.running is not None:
            self.model.running[:] = model.running
        self.epoch = epoch

    def restore(self, model):
        model.flat[:] = self.model.flat
        if model.running is not None:
            model.running[:] = self.model.running


def train(s, model, history, optimizer, data, val, target, backend, tasks,
          random_state, n_threads):
    """Run the epochs of one stochastic fit, in place on its records.

    Parameters
    ----------
    s : the fit's settings (``_params.fit_settings``)
    model : Model, trained in place
    history : History, extended in place
    optimizer : Optimizer (``_state``), updated in place
    data : (X, Y, sample_weight), Y in the model's dtype
    val : (X_val, Y_val, sw_val), a user's validation set, or None
    target : Target
    backend : Backend
    tasks : FitTasks (the callbacks' task tree)
    random_state : RandomState of the fit
    n_threads : threads of a step (``_threads.effective_n_threads``)

    Raises ValueError (the previous model is kept by the caller) when
    training diverges without a best-so-far model to fall back on.
    """
    problem = Problem(s, model, data, val, target, backend, random_state,
                      n_threads)
    keep_best = s.early_stopping or (s.restore_best_weights and not s.incremental)
    best = Best(model) if keep_best else None
    history.n_iter = 0
    with blas_threads(problem.batch_size, model.units):
        try:
            for _ in range(s.max_iter):
                tasks.begin(model, history)
                problem.epoch(s, model, history, optimizer, random_state)
                if _stops(s, problem, model, history, optimizer, best, tasks):
                    break
        except KeyboardInterrupt as interrupt:
            # The compiled epoch stops between minibatches and tells how far
            # Adam got; the weights are those of the last whole step.
            optimizer.step = getattr(interrupt, "step", optimizer.step)
            warnings.warn("Training interrupted by user.")
            if not backend.all_finite(model.flat):
                raise ValueError(
                    "Training was interrupted and the weights are not finite; "
                    "the previous model is kept."
                ) from None
    if best is not None:
        best.restore(model)


def _stops(s, problem, model, h, optimizer, best, tasks):
    """What follows an epoch: divergence, validation, patience, callbacks;
    True when training stops."""
    diverged = _diverged(s, problem, model, h, optimizer, best)
    if diverged is not None:
        if best is None or best.epoch is None:
            raise ValueError(diverged + KEPT)
        # A best-so-far model exists: keep it, as scikit-learn does, and say
        # so rather than stop silently. The optimizer's moments diverged
        # with the weights: a later partial_fit starts them afresh.
        optimizer.state[:] = 0
        optimizer.step = 0
        warnings.warn(
            f"{diverged} Training stopped; the weights of iteration "
            f"{best.epoch}, the best one, are restored.",
            ConvergenceWarning,
        )
        return True
    if tasks.end(model, h):
        return True
    if h.no_improvement_count > s.n_iter_no_change:
        if _stop_or_slow_down(s, optimizer):
            return True
        h.no_improvement_count = 0
    if s.incremental:
        return True
    if h.n_iter == s.max_iter:
        warnings.warn(
            "Stochastic Optimizer: Maximum iterations (%d) "
            "reached and the optimization hasn't converged yet." % s.max_iter,
            ConvergenceWarning,
        )
    return False


def _diverged(s, problem, model, h, optimizer, best):
    """The divergence message after an epoch, or None; tracks progress and
    keeps the best model otherwise."""
    finite = problem.backend.all_finite(model.flat)
    if not (np.isfinite(h.loss) and finite):
        if problem.val is not None:
            problem.val.record(h, model)
        return divergence(h.n_iter, h.loss, optimizer.learning_rate, finite)
    try:
        improved = _track_progress(s, h, problem.val, model)
    except Diverged as e:
        return str(e)
    if improved and best is not None:
        best.keep(model, h.n_iter)
    return None


def batch_size_of(batch_size, n_samples, warn=True):
    """The minibatch size a batch_size parameter gives for n_samples rows."""
    if batch_size == "auto":
        return min(200, n_samples)
    if batch_size > n_samples and warn:
        warnings.warn(
            "Got `batch_size` less than 1 or larger than "
            "sample size. It is going to be clipped"
        )
    return int(np.clip(batch_size, 1, n_samples))


def _dropout_seed(random_state, samples_seen):
    """This epoch's dropout seed, drawn from random_state only with dropout
    (the default trajectory is untouched) and mixed with the samples seen,
    so successive partial_fit calls, which restart random_state, draw new
    masks."""
    draw = int(random_state.randint(_SEED_END, dtype=np.int64))
    return (draw + samples_seen * 0x9E3779B97F4A7C15) % 2**64


def _track_progress(s, h, val, model):
    """Update the patience count; True when the model is the best so far."""
    if val is None:
        loss = h.loss_curve[-1]
        if loss > h.best_loss - s.tol:
            h.no_improvement_count += 1
        else:
            h.no_improvement_count = 0
        improved = loss < h.best_loss
        if improved:
            h.best_loss = loss
        return improved
    score, val_loss = val.record(h, model)
    if not np.isfinite(score):
        raise Diverged(divergence(h.n_iter, h.loss, s.learning_rate_init, True,
                                  what="the validation predictions are not finite"))
    if s.verbose:
        print("Validation score: %f" % score)
    if s.early_stopping_metric == "loss":
        if s.verbose:
            print("Validation loss: %f" % val_loss)
        # Stop and keep the best weights on the loss, as with the training
        # loss; best_validation_score_ is still the best score seen.
        h.best_validation_score = max(h.best_validation_score, score)
        value, best = -val_loss, -h.best_validation_loss
    else:
        value, best = score, h.best_validation_score
    h.best_validation_loss = min(h.best_validation_loss, val_loss)
    if value < best + s.tol:
        h.no_improvement_count += 1
    else:
        h.no_improvement_count = 0
    if value > best:
        h.best_validation_score = max(h.best_validation_score, score)
        return True
    return False


def _stop_or_slow_down(s, optimizer):
    """After n_iter_no_change epochs without progress: stop, or cut the rate."""
    subject = "Training loss"
    if s.early_stopping:
        subject = "Validation " + s.early_stopping_metric
    msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
        subject, s.tol, s.n_iter_no_change,
    )
    if s.learning_rate != "adaptive" or not follows(s.solver, "adaptive"):
        if s.verbose:
            print(msg + " Stopping.")
        return True
    if optimizer.learning_rate <= 1e-6:
        if s.verbose:
            print(msg + " Learning rate too small. Stopping.")
        return True
    optimizer.learning_rate /= 5.0
    if s.verbose:
        print(msg + " Setting learning rate to %f" % optimizer.learning_rate)
    return False
