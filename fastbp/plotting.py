"""Training curves as scikit-learn-style displays (matplotlib imported lazily).

``LossCurveDisplay`` draws the training loss per epoch and, when the fit kept
one, the validation loss; ``LearningRateDisplay`` draws the learning rate used
in each epoch. Like scikit-learn's displays, ``from_estimator`` reads a fitted
estimator and ``plot`` draws; both return the display, whose ``figure_``,
``ax_`` and ``lines_`` are what was drawn. ``LRFinderDisplay`` draws a
learning-rate range test (``fastbp.lr_find``): the smoothed loss against the
learning rate, and the suggested rate.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError(
            "plotting needs matplotlib: pip install 'fastbp[plot]'"
        ) from exc
    return plt


class _CurveDisplay:
    """Per-epoch curves on one axes, epoch 1 first."""

    ylabel = ""
    _curves = ()  # (fitted attribute, legend label), drawn when present

    def __init__(self, curves, *, estimator_name=None):
        self.curves = dict(curves)
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, **kwargs):
        """Plot the curves a fitted estimator recorded.

        Parameters
        ----------
        estimator : fitted MLPClassifier or MLPRegressor
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        **kwargs : dict
            Passed to every ``Axes.plot`` call.

        Returns
        -------
        display : the display, with ``figure_``, ``ax_`` and ``lines_``.
        """
        check_is_fitted(estimator, "coefs_")
        curves = {
            label: list(getattr(estimator, attr))
            for attr, label in cls._curves
            if getattr(estimator, attr, None) is not None
        }
        if not curves:
            raise ValueError(
                f"{type(estimator).__name__} recorded no "
                f"{' or '.join(a for a, _ in cls._curves)}; "
                "it is recorded by the stochastic solvers"
            )
        display = cls(curves, estimator_name=type(estimator).__name__)
        return display.plot(ax=ax, **kwargs)

    def plot(self, ax=None, **kwargs):
        """Draw the curves; returns self with ``figure_``, ``ax_``, ``lines_``."""
        if ax is None:
            _, ax = _pyplot().subplots()
        self.lines_ = {}
        for label, values in self.curves.items():
            epochs = range(1, len(values) + 1)
            (self.lines_[label],) = ax.plot(epochs, values, label=label, **kwargs)
        ax.set_xlabel("epoch")
        ax.set_ylabel(self.ylabel)
        if self.estimator_name:
            ax.set_title(self.estimator_name)
        ax.legend()
        self.ax_, self.figure_ = ax, ax.figure
        return self


class LossCurveDisplay(_CurveDisplay):
    """Training loss per epoch (``loss_curve_``), with the validation loss
    (``validation_loss_curve_``) when the fit recorded one.

    Parameters
    ----------
    curves : dict of str -> sequence of float
        Legend label -> one value per epoch.
    estimator_name : str, default=None
        Title of the axes.

    Attributes
    ----------
    lines_ : dict of str -> matplotlib Line2D
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> from fastbp.plotting import LossCurveDisplay  # doctest: +SKIP
    >>> disp = LossCurveDisplay.from_estimator(clf)  # doctest: +SKIP
    >>> disp.figure_.savefig("loss.png")  # doctest: +SKIP
    """

    ylabel = "loss"
    _curves = (
        ("loss_curve_", "training loss"),
        ("validation_loss_curve_", "validation loss"),
    )


class LearningRateDisplay(_CurveDisplay):
    """Learning rate used in each epoch (``learning_rate_curve_``).

    Parameters, attributes and methods as for ``LossCurveDisplay``.
    """

    ylabel = "learning rate"
    _curves = (("learning_rate_curve_", "learning rate"),)


class LRFinderDisplay:
    """A learning-rate range test (:func:`fastbp.lr_find`): the smoothed loss
    against the learning rate (log scale), the suggested rate marked.

    Parameters
    ----------
    learning_rates : sequence of float
    losses : sequence of float
        The smoothed loss at each learning rate.
    suggestion : float or None, default=None
        The suggested learning rate, marked on the curve.
    estimator_name : str, default=None
        Title of the axes.

    Attributes
    ----------
    lines_ : dict of str -> matplotlib Line2D
        ``"loss"``, and ``"suggestion"`` (one point) when there is one.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> from fastbp import MLPClassifier  # doctest: +SKIP
    >>> from fastbp.plotting import LRFinderDisplay  # doctest: +SKIP
    >>> disp = LRFinderDisplay.from_estimator(MLPClassifier(), X, y)  # doctest: +SKIP
    >>> disp.suggestion  # doctest: +SKIP
    """

    def __init__(self, learning_rates, losses, *, suggestion=None,
                 estimator_name=None):
        self.learning_rates = learning_rates
        self.losses = losses
        self.suggestion = suggestion
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, X, y, *, sample_weight=None, ax=None,
                       lr_find_params=None, **kwargs):
        """Run :func:`fastbp.lr_find` on a clone of ``estimator`` and plot it.

        Parameters
        ----------
        estimator : MLPClassifier or MLPRegressor (fitted or not; unchanged)
        X, y, sample_weight : the training data, as for ``lr_find``
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        lr_find_params : dict, default=None
            More arguments of ``lr_find`` (``min_lr``, ``max_lr``,
            ``num_steps``, ...).
        **kwargs : dict
            Passed to the loss curve's ``Axes.plot`` call.

        Returns
        -------
        display : LRFinderDisplay
        """
        from fastbp._lr_find import lr_find

        result = lr_find(estimator, X, y, sample_weight=sample_weight,
                         **(lr_find_params or {}))
        return cls.from_lr_finder(result, ax=ax, **kwargs)

    @classmethod
    def from_lr_finder(cls, result, *, ax=None, **kwargs):
        """Plot the outcome of :func:`fastbp.lr_find` (an ``LRFinder``)."""
        display = cls(result.learning_rates_, result.losses_,
                      suggestion=result.suggestion_,
                      estimator_name=type(result.estimator_).__name__)
        return display.plot(ax=ax, **kwargs)

    def plot(self, ax=None, **kwargs):
        """Draw; returns self with ``figure_``, ``ax_``, ``lines_``."""
        if ax is None:
            _, ax = _pyplot().subplots()
        self.lines_ = {}
        (self.lines_["loss"],) = ax.plot(self.learning_rates, self.losses,
                                         label="loss (smoothed)", **kwargs)
        if self.suggestion is not None:
            # On the curve (interpolated in log rate, for a suggestion that is
            # not one of the rates).
            loss = np.interp(np.log(self.suggestion), np.log(self.learning_rates),
                             self.losses)
            (self.lines_["suggestion"],) = ax.plot(
                [self.suggestion], [loss], "o", color="red",
                label=f"suggestion: {self.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        if self.estimator_name:
            ax.set_title(self.estimator_name)
        ax.legend()
        self.ax_, self.figure_ = ax, ax.figure
        return self
