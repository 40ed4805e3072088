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

from fastbp._inputs import as_kernel_input
from fastbp._kernels import LOSSES
from fastbp._schedules import epoch_learning_rate, follows
from fastbp._settings import Settings
from fastbp._state import Network
from fastbp._threads import effective_n_threads

# Dropout seeds are drawn from [0, _SEED_END).
_SEED_END = np.iinfo(np.int64).max
KEPT = " The previous model, if any, is kept."


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


def divergence(n_iter, loss, learning_rate, weights_finite, what=None):
    """The message of a diverged fit: scikit-learn's sentence for non-finite
    weights, then where it happened and what to try."""
    sklearn_words = ""
    if what is None and not weights_finite:
        what = "the solver produced non-finite parameter weights"
        sklearn_words = (
            "Solver produced non-finite parameter weights. The input data may "
            "contain large values and need to be preprocessed. "
        )
    elif what is None:
        what = f"the training loss is {loss}"
    rate = "" if learning_rate is None else f" ({learning_rate:g})"
    return (
        f"{sklearn_words}Training diverged at iteration {n_iter}: {what}. The "
        f"learning rate{rate} may be too high, or the input data may contain "
        "large values and need scaling (for example with StandardScaler)."
    )


def split_validation(s, X, Y, sample_weight, random_state, target):
    """Hold out validation_fraction of the data, as scikit-learn does.

    Returns X, Y, sample_weight of the training part and the validation
    triple (X_val, Y_val, sw_val).
    """
    # Multilabel targets are not stratified; the others as bool, the form
    # scikit-learn's binarized y has: the same split, and a too-small class
    # is named as scikit-learn names it (['True']).
    stratify = Y.astype(bool) if target.classifier and Y.shape[1] == 1 else None
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


def train(s, model, history, optimizer, data, val, target, backend, tasks,
          random_state, forward):
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
    forward : callable (X, model) -> output layer activations

    Raises ValueError (the previous model is kept by the caller) when
    training diverges without a best-so-far model to fall back on.
    """
    X, Y, sample_weight = data
    flat, running, units = model.flat, model.running, model.units
    if val is None and s.early_stopping:
        X, Y, sample_weight, val = split_validation(
            s, X, Y, sample_weight, random_state, target)
    if val is not None:
        # Encoded targets for the loss, decoded ones for the score.
        X_val, Y_val, sw_val = val
        Y_val = np.ascontiguousarray(Y_val, dtype=flat.dtype)
        val = (X_val, Y_val, target.decode(Y_val), sw_val)
    n_samples = X.shape[0]
    batch_size = batch_size_of(s.batch_size, n_samples)
    X_dense, csr = as_kernel_input(X, flat.dtype)
    plan = target.network.plan(units, batch_size, gather=s.shuffle and csr is None,
                               dropout=s.dropout, batch_norm=model.batch_norm)
    use_dropout = plan.drop.any()
    work = np.empty(plan.work_size, dtype=flat.dtype)
    grad = np.empty_like(flat)
    order = np.arange(n_samples, dtype=np.intp)
    keep_best = s.early_stopping or (s.restore_best_weights and not s.incremental)
    best = model.copy() if keep_best else None
    best_epoch = None
    h = history
    n_threads = effective_n_threads(s.n_jobs)

    h.n_iter = 0
    try:
        for _ in range(s.max_iter):
            tasks.begin(model, h)
            if s.shuffle:
                # sklearn.utils.shuffle's permutation, without its checks.
                order = order[random_state.permutation(n_samples)]
            optimizer.learning_rate = epoch_learning_rate(
                s, optimizer.epoch, optimizer.learning_rate, h.t)
            seed = _dropout_seed(random_state, h.t) if use_dropout else 0
            loss_sum, optimizer.step = backend.epoch.run_epoch(
                plan, Settings.of(s, optimizer.learning_rate, n_threads),
                X_dense, csr,
                Y, sample_weight, order if s.shuffle else None, batch_size,
                flat, grad, work, optimizer.state, optimizer.step,
                seed=seed, running=running,
            )
            h.n_iter += 1
            optimizer.epoch += 1
            h.loss = loss_sum / n_samples
            h.t += n_samples
            h.loss_curve.append(h.loss)
            h.learning_rate_curve.append(optimizer.learning_rate)
            if s.verbose:
                print("Iteration %d, loss = %.8f" % (h.n_iter, h.loss))
            diverged = None
            finite = backend.epoch.all_finite(flat)
            if not (np.isfinite(h.loss) and finite):
                diverged = divergence(h.n_iter, h.loss, optimizer.learning_rate,
                                      finite)
                if val is not None:
                    _record_validation(h, val, model, target, backend, forward)
            else:
                try:
                    improved = _track_progress(s, h, val, model, target, backend,
                                               forward)
                except Diverged as e:
                    diverged = str(e)
                else:
                    if improved and keep_best:
                        best.flat[:] = flat
                        if running is not None:
                            best.running[:] = running
                        best_epoch = h.n_iter
            if diverged is not None:
                if best_epoch is None:
                    raise ValueError(diverged + KEPT)
                # A best-so-far model exists: keep it, as scikit-learn does,
                # and say so rather than stop silently. The optimizer's
                # moments diverged with the weights: a later partial_fit
                # starts them afresh.
                optimizer.state[:] = 0
                optimizer.step = 0
                warnings.warn(
                    f"{diverged} Training stopped; the weights of iteration "
                    f"{best_epoch}, the best one, are restored.",
                    ConvergenceWarning,
                )
                break
            if tasks.end(model, h):
                break
            if h.no_improvement_count > s.n_iter_no_change:
                if _stop_or_slow_down(s, optimizer):
                    break
                h.no_improvement_count = 0
            if s.incremental:
                break
            if h.n_iter == s.max_iter:
                warnings.warn(
                    "Stochastic Optimizer: Maximum iterations (%d) "
                    "reached and the optimization hasn't converged yet."
                    % s.max_iter,
                    ConvergenceWarning,
                )
    except KeyboardInterrupt as interrupt:
        # The compiled epoch stops between minibatches and tells how far
        # Adam got; the weights are those of the last whole step.
        optimizer.step = getattr(interrupt, "step", optimizer.step)
        warnings.warn("Training interrupted by user.")
        if not backend.epoch.all_finite(flat):
            raise ValueError(
                "Training was interrupted and the weights are not finite; "
                "the previous model is kept."
            ) from None
    if keep_best:
        flat[:] = best.flat
        if running is not None:
            running[:] = best.running


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


def _record_validation(h, val, model, target, backend, forward):
    """Append the validation score and loss of model to their curves (NaN
    both when its predictions are not finite, as scikit-learn records);
    return them."""
    X_val, Y_val, y_val, sw_val = val
    output = forward(X_val, model)
    score = val_loss = np.nan
    if np.isfinite(output).all():
        score = target.score(y_val, target.decode(output), sw_val)
        val_loss, _ = backend.kernels.loss_delta(
            output, Y_val, sw_val, None,
            LOSSES[target.network.loss], np.empty_like(output),
            target.network.loss_param,
        )
    h.validation_scores.append(float(score))
    h.validation_loss_curve.append(float(val_loss))
    return score, val_loss


def _track_progress(s, h, val, model, target, backend, forward):
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
    score, val_loss = _record_validation(h, val, model, target, backend, forward)
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
