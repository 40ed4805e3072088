"""Learning-rate schedules: the rate each epoch of a stochastic solver uses.

``epoch_learning_rate`` is called by the stochastic driver
(``fastbp._stochastic``) once per epoch, before the epoch runs; the rate it
returns is used for every minibatch of that epoch and recorded in
``learning_rate_curve_``. Epochs are counted from
0 since the optimizer was created: a fit (warm or not) starts a new count,
``partial_fit`` continues it (as scikit-learn keeps its optimizer there).

Schedules, with lr0 = learning_rate_init and k the epoch counted after the
warm-up (k = epoch - warmup_epochs):

- ``"constant"``: lr0.
- ``"invscaling"``: lr0 at k = 0, then lr0 / (t + 1) ** power_t with t the
  samples seen so far (``t_``): scikit-learn's rule for sgd, which it updates
  after each epoch from the sample count.
- ``"adaptive"``: lr0 at k = 0, then the previous epoch's rate; the driver
  divides it by 5 each time n_iter_no_change epochs fail to improve by tol
  (and stops once it is below 1e-6), as scikit-learn's sgd.
- ``"step"``: lr0 * lr_gamma ** floor(k / lr_step_size) (PyTorch's StepLR;
  Keras's ExponentialDecay with staircase=True).
- ``"exponential"``: lr0 * lr_gamma ** (k / lr_step_size), the smooth version
  of "step" (Keras's ExponentialDecay with decay_steps=lr_step_size).
- ``"cosine"``: lr_min + (lr0 - lr_min) (1 + cos(pi k_i / T_i)) / 2
  (Loshchilov & Hutter (2017), "SGDR: stochastic gradient descent with warm
  restarts", ICLR). Without lr_cycle, one annealing over
  T = max_iter - warmup_epochs epochs (lr_min after it); with lr_cycle, warm
  restarts: the first cycle lasts lr_cycle epochs, each next one
  lr_cycle_mult times longer, and k_i counts epochs within the current cycle.
- a callable ``f(epoch, lr) -> lr``: called with the epoch (counted from 0,
  warm-up included) and the rate of the previous epoch (lr0 at first), as
  Keras's LearningRateScheduler; it must return a positive finite float.

``warmup_epochs`` = W > 0 prepends a linear warm-up to any of them: epoch
e < W uses lr0 (e + 1) / (W + 1), then the schedule starts at k = 0.

scikit-learn's adam ignores learning_rate; so does fastbp's (its "invscaling"
and "adaptive" keep lr0, and adaptive stops training instead of cutting the
rate), which keeps adam's trajectories scikit-learn's. Which solvers do is
their ``follows_schedule`` fact in ``fastbp._families.SOLVERS``, read here
by ``follows``. Every other schedule, and every schedule with every other
stochastic solver, applies as written.
"""

import math
from numbers import Real

import numpy as np

from fastbp._families import SOLVER

SCHEDULES = ("constant", "invscaling", "adaptive", "step", "exponential", "cosine")


def warmup(lr0: float, epoch: int, warmup_epochs: int) -> float:
    """Linear warm-up rate at epoch < warmup_epochs."""
    return lr0 * (epoch + 1) / (warmup_epochs + 1)


def inverse_scaling(lr0: float, samples_seen: int, power_t: float) -> float:
    """scikit-learn's invscaling rate once samples_seen samples were seen."""
    return lr0 / (samples_seen + 1) ** power_t


def step_decay(lr0: float, k: int, step_size: int, gamma: float) -> float:
    return lr0 * gamma ** (k // step_size)


def exponential_decay(lr0: float, k: int, step_size: int, gamma: float) -> float:
    return lr0 * gamma ** (k / step_size)


def cosine_annealing(lr0: float, k: int, lr_min: float, period: int,
                     cycle_mult: int = 1, restarts: bool = False) -> float:
    """SGDR's rate at epoch k: warm restarts, or one annealing held at lr_min."""
    if restarts:
        while k >= period:  # find the cycle k falls in
            k -= period
            period *= cycle_mult
    else:
        k = min(k, period)
    return lr_min + (lr0 - lr_min) * (1 + math.cos(math.pi * k / period)) / 2


def follows(solver: str, schedule) -> bool:
    """Whether a stochastic solver's rate follows the schedule: scikit-learn's
    "invscaling" and "adaptive" leave it at lr0 where its row says so."""
    return SOLVER[solver].follows_schedule or schedule not in (
        "invscaling", "adaptive")


def epoch_learning_rate(s, epoch: int, previous: float,
                        samples_seen: int) -> float:
    """The learning rate of an epoch (0-based, see module doc).

    s is the fit's parameters (``fastbp._params.fit_settings``); previous is
    the rate the last epoch used (lr0 before the first), after any cut by
    the adaptive schedule; samples_seen is t_ before the epoch.
    """
    lr0 = float(s.learning_rate_init)
    schedule = s.learning_rate
    if callable(schedule):
        if epoch < s.warmup_epochs:
            return warmup(lr0, epoch, s.warmup_epochs)
        rate = schedule(epoch, previous)
        if (isinstance(rate, (bool, np.bool_)) or not isinstance(rate, Real)
                or not math.isfinite(rate) or rate <= 0):
            raise ValueError(
                f"The learning_rate callable returned {rate!r} at epoch {epoch}; "
                "it must return a positive finite float."
            )
        return float(rate)
    if epoch < s.warmup_epochs:
        return warmup(lr0, epoch, s.warmup_epochs)
    k = epoch - s.warmup_epochs
    if schedule == "constant" or not follows(s.solver, schedule):
        return lr0
    if schedule in ("invscaling", "adaptive") and k == 0:
        return lr0
    if schedule == "invscaling":
        return inverse_scaling(lr0, samples_seen, s.power_t)
    if schedule == "adaptive":
        return previous
    if schedule == "step":
        return step_decay(lr0, k, s.lr_step_size, s.lr_gamma)
    if schedule == "exponential":
        return exponential_decay(lr0, k, s.lr_step_size, s.lr_gamma)
    if s.lr_cycle is None:
        period = max(1, s.max_iter - s.warmup_epochs)
        return cosine_annealing(lr0, k, s.lr_min, period)
    return cosine_annealing(lr0, k, s.lr_min, s.lr_cycle, s.lr_cycle_mult,
                            restarts=True)
