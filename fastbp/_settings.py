"""The optimizer and training settings of an epoch, as one record.

``run_epoch`` (compiled and NumPy twin) takes a ``Settings`` the way it takes
a ``Plan``: built here, in one place, from the fit's settings
(``_params.FitSettings``) at the epoch's learning rate, and read and checked
once on entry (``_epoch._read_settings``). Adding a hyperparameter of the
update rules is a field here, a line in ``Settings.of``, and its use.
"""

from dataclasses import dataclass

from fastbp._optimizers import SOLVERS


@dataclass(frozen=True)
class Settings:
    """What a minibatch step needs besides the network and the data.

    Attributes
    ----------
    solver : int
        ``_optimizers.SOLVERS`` code.
    learning_rate : float
        Learning rate of the epoch (before Adam's bias correction).
    momentum, nesterov : float, bool
        sgd's momentum and whether it is Nesterov's.
    beta_1, beta_2, epsilon : float
        The Adam family's decay rates and every adaptive rule's epsilon.
    rho, weight_decay : float
        rmsprop/adadelta decay rate; adamw's decoupled weight decay.
    alpha, l1 : float
        L2 and L1 penalty strengths (coefficients only).
    clip_norm, clip_value : float
        Gradient clipping per minibatch before the step, 0 for off.
    n_threads : int
        Threads a step may use (``_threads.effective_n_threads``).
    """

    solver: int
    learning_rate: float
    momentum: float = 0.9
    nesterov: bool = True
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    rho: float = 0.9
    weight_decay: float = 0.0
    alpha: float = 1e-4
    l1: float = 0.0
    clip_norm: float = 0.0
    clip_value: float = 0.0
    n_threads: int = 1

    @classmethod
    def of(cls, s, learning_rate, n_threads=1):
        """The step settings of a fit's settings s (``_params.FitSettings``)
        at this epoch's learning_rate."""
        return cls(
            solver=SOLVERS[s.solver],
            learning_rate=float(learning_rate),
            momentum=float(s.momentum),
            nesterov=bool(s.nesterovs_momentum),
            beta_1=float(s.beta_1),
            beta_2=float(s.beta_2),
            epsilon=float(s.epsilon),
            rho=float(s.rho),
            weight_decay=float(s.weight_decay),
            alpha=float(s.alpha),
            l1=float(s.l1),
            clip_norm=float(s.clip_norm or 0.0),
            clip_value=float(s.clip_value or 0.0),
            n_threads=int(n_threads),
        )
