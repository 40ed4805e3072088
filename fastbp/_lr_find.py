"""The learning-rate range test (Smith 2017), as fastai's and Lightning's
``lr_find`` run it, on a clone of a fastbp estimator."""

import math
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils._indexing import _safe_indexing
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import _num_samples

from fastbp._families import SOLVER
from fastbp._stochastic import batch_size_of

# The suggestion ignores the first and last points of the smoothed curve: the
# start is the moving average warming up, the end the divergence (Lightning's
# skip_begin and skip_end).
SKIP_BEGIN = 10
SKIP_END = 1


class _Rate:
    """A learning_rate callable returning whatever rate the range test set
    for the next minibatch."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch, previous):
        return self.rate

    def __repr__(self):
        return f"lr_find rate ({self.rate:g})"


class LRFinder:
    """The outcome of :func:`fastbp.lr_find`.

    Attributes
    ----------
    learning_rates_ : ndarray of shape (n_steps,)
        The learning rate of each minibatch step, growing exponentially.
    losses_ : ndarray of shape (n_steps,)
        The training loss of each step, smoothed (an exponential moving
        average with bias correction, as fastai's and Lightning's).
    raw_losses_ : ndarray of shape (n_steps,)
        The loss of each step's minibatch as the solver computed it (the
        ``loss_curve_`` of the clone: one entry per step).
    suggestion_ : float or None
        The learning rate where the smoothed loss falls fastest against the
        log of the rate (the steepest descent, fastai's and Lightning's
        suggestion), looked for on the way down to the lowest smoothed loss
        and leaving out the first 10 steps and the last one; None (with a
        warning) when the lowest loss comes too early to have one.
    diverged_ : bool
        Whether the test stopped before its last step because the loss
        diverged.
    estimator_ : MLPClassifier or MLPRegressor
        The clone trained by the test (its weights are those of the last
        step, useless for anything but inspection).
    """

    def __init__(self, learning_rates, raw_losses, losses, suggestion, diverged,
                 estimator):
        self.learning_rates_ = learning_rates
        self.raw_losses_ = raw_losses
        self.losses_ = losses
        self.suggestion_ = suggestion
        self.diverged_ = diverged
        self.estimator_ = estimator

    def plot(self, ax=None, **kwargs):
        """Draw the range test; returns a :class:`fastbp.plotting.LRFinderDisplay`."""
        from fastbp.plotting import LRFinderDisplay

        return LRFinderDisplay.from_lr_finder(self, ax=ax, **kwargs)

    def __repr__(self):
        suggestion = "None" if self.suggestion_ is None else f"{self.suggestion_:.3g}"
        return (f"LRFinder(steps={len(self.learning_rates_)}, "
                f"suggestion_={suggestion})")


def lr_find(estimator, X, y, *, sample_weight=None, min_lr=1e-7, max_lr=10.0,
            num_steps=100, smoothing=0.98, diverge_threshold=4.0):
    """Learning-rate range test: train briefly with a growing learning rate
    and suggest one.

    Smith's range test (2017), as fastai's and PyTorch Lightning's
    ``lr_find`` run it: a clone of ``estimator`` (same architecture, solver
    and other settings) trains one minibatch per step, the learning rate
    growing exponentially from ``min_lr`` to ``max_lr`` over ``num_steps``
    steps, the optimizer's state carried from step to step. It stops early
    when the smoothed loss exceeds ``diverge_threshold`` times its lowest
    value, or when the loss or the weights stop being finite. The estimator
    passed in is not changed.

    The minibatches are those a fit would draw: ``batch_size`` rows, in an
    order shuffled each pass over the data (with ``shuffle=True``) from
    ``random_state``, passes repeating until ``num_steps``. Each step is one
    ``partial_fit`` call of the clone on its minibatch, with the rate of
    that step.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        Its settings are used, with ``learning_rate`` and
        ``learning_rate_init`` replaced by the test's rates (and no warm-up or
        early stopping); ``class_weight="balanced"`` becomes the class weights
        a fit on all of ``y`` uses. The solver must be stochastic: lbfgs and newton have
        no learning rate, and raise a ValueError.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the samples, used in each step's loss and gradient as in
        ``fit``.
    min_lr, max_lr : float, default=1e-7 and 10.0
        The first and the last learning rate.
    num_steps : int, default=100
        Number of minibatch steps (at most; fewer when the loss diverges).
    smoothing : float in [0, 1), default=0.98
        The exponential moving average's weight on the past (0: no smoothing).
    diverge_threshold : float > 1 or None, default=4.0
        Stop once the smoothed loss exceeds this many times its lowest value;
        None: stop only on non-finite losses.

    Returns
    -------
    LRFinder
        With ``learning_rates_``, ``losses_`` (smoothed), ``raw_losses_``,
        ``suggestion_`` and ``plot()``.

    References
    ----------
    L. N. Smith, "Cyclical learning rates for training neural networks",
    WACV 2017.

    Examples
    --------
    >>> from fastbp import MLPClassifier, lr_find  # doctest: +SKIP
    >>> clf = MLPClassifier(solver="sgd", random_state=0)  # doctest: +SKIP
    >>> result = lr_find(clf, X, y)  # doctest: +SKIP
    >>> clf.set_params(learning_rate_init=result.suggestion_).fit(X, y)  # doctest: +SKIP
    >>> result.plot()  # doctest: +SKIP
    """
    from fastbp._mlp import MLPClassifier, MLPRegressor

    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError(
            f"lr_find takes a fastbp MLPClassifier or MLPRegressor, not "
            f"{type(estimator).__name__}.")
    if estimator.solver in ("lbfgs", "newton"):
        raise ValueError(
            f"lr_find needs a stochastic solver; solver={estimator.solver!r} "
            "takes no learning rate (it chooses its own steps). Use one of "
            f"{', '.join(map(repr, SOLVER))}.")
    _check_range(min_lr, max_lr, num_steps, smoothing, diverge_threshold)

    n_samples = _num_samples(X)
    batch_size = batch_size_of(estimator.batch_size, n_samples, warn=False)
    rates = min_lr * (max_lr / min_lr) ** (np.arange(num_steps) / (num_steps - 1))
    rate = _Rate(float(rates[0]))
    est = clone(estimator).set_params(
        learning_rate=rate, learning_rate_init=float(rates[0]), warmup_epochs=0,
        early_stopping=False, warm_start=False, verbose=False)
    est.set_callbacks()  # a logger set on the estimator records its fits, not this
    fit_args = {}
    if isinstance(est, MLPClassifier):
        fit_args["classes"] = classes = unique_labels(y)
        if isinstance(estimator.class_weight, str):  # "balanced"
            # partial_fit takes a dict: the weights fit would use on all of y.
            weights = compute_class_weight("balanced", classes=classes, y=y)
            est.set_params(class_weight=dict(zip(classes.tolist(), weights)))
    random_state = check_random_state(estimator.random_state)

    raw, smoothed = [], []
    average, best, diverged = 0.0, math.inf, False
    batches = _batches(n_samples, batch_size, estimator.shuffle, random_state)
    for step, batch in zip(range(num_steps), batches):
        rate.rate = float(rates[step])
        sw = None if sample_weight is None else _safe_indexing(sample_weight, batch)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # one-epoch fits: not converged
                est.partial_fit(_safe_indexing(X, batch), _safe_indexing(y, batch),
                                sample_weight=sw, **fit_args)
        except ValueError as exc:
            if "diverged" not in str(exc):  # the solver's divergence error
                raise
            diverged = True
            break
        fit_args = {}
        loss = float(est.loss_curve_[-1])
        average = smoothing * average + (1 - smoothing) * loss
        value = average / (1 - smoothing ** (step + 1))
        raw.append(loss)
        smoothed.append(value)
        best = min(best, value)
        if (diverge_threshold is not None and step > 0
                and value > diverge_threshold * best):
            diverged = step < num_steps - 1
            break

    rates = rates[:len(raw)]
    smoothed = np.array(smoothed)
    return LRFinder(rates, np.array(raw), smoothed, _steepest(rates, smoothed),
                    diverged, est)


def _batches(n_samples, batch_size, shuffle, random_state):
    """Row indices of the minibatches, pass after pass, as a fit draws them."""
    order = np.arange(n_samples)
    while True:
        if shuffle:
            order = order[random_state.permutation(n_samples)]
        for batch in gen_batches(n_samples, batch_size):
            yield order[batch]


def _steepest(rates, losses):
    """The rate where the loss falls fastest against log(rate), or None."""
    # On the way down to the lowest loss: past it the loss is rising or
    # chaotic, and a dip there is no rate to train with.
    lowest = int(np.argmin(losses)) + 1 if len(losses) else 0
    stop = min(len(losses) - SKIP_END, lowest)
    if stop - SKIP_BEGIN < 2:
        warnings.warn(
            f"lr_find found its lowest loss at step {lowest} of {len(losses)}, "
            f"too early to suggest a learning rate (it leaves out the first "
            f"{SKIP_BEGIN} steps and the last {SKIP_END}); lower min_lr or "
            "raise num_steps.")
        return None
    slope = np.gradient(losses[SKIP_BEGIN:stop], np.log(rates[SKIP_BEGIN:stop]))
    return float(rates[SKIP_BEGIN + int(np.argmin(slope))])


def _check_range(min_lr, max_lr, num_steps, smoothing, diverge_threshold):
    def real(value):
        return isinstance(value, Real) and not isinstance(value, bool) and \
            math.isfinite(value)

    if not (real(min_lr) and real(max_lr) and 0 < min_lr < max_lr):
        raise ValueError(
            f"lr_find needs 0 < min_lr < max_lr, got min_lr={min_lr!r} and "
            f"max_lr={max_lr!r}.")
    if not (isinstance(num_steps, Integral) and not isinstance(num_steps, bool)
            and num_steps >= 2):
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}.")
    if not (real(smoothing) and 0 <= smoothing < 1):
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}.")
    if diverge_threshold is not None and not (real(diverge_threshold)
                                              and diverge_threshold > 1):
        raise ValueError(
            f"diverge_threshold must be a float > 1 or None, got "
            f"{diverge_threshold!r}.")
