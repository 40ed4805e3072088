"""Training curves as scikit-learn-style displays (matplotlib imported lazily).

``LossCurveDisplay`` draws the training loss per epoch and, when the fit kept
one, the validation loss; ``LearningRateDisplay`` draws the learning rate used
in each epoch. Like scikit-learn's displays, ``from_estimator`` reads a fitted
estimator and ``plot`` draws; both return the display, whose ``figure_``,
``ax_`` and ``lines_`` are what was drawn.
"""

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
