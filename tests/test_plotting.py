"""Displays render with the Agg backend and draw the fitted curves."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification

from fastbp import MLPClassifier, MLPRegressor

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")

from fastbp.plotting import LearningRateDisplay, LossCurveDisplay  # noqa: E402

X, y = make_classification(100, 5, random_state=0)


def _fit(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier((4,), max_iter=7, random_state=0, **params).fit(X, y)


def test_loss_curve_from_estimator_draws_the_loss_per_epoch():
    clf = _fit()
    disp = LossCurveDisplay.from_estimator(clf)
    line = disp.lines_["training loss"]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 8))
    np.testing.assert_array_equal(line.get_ydata(), clf.loss_curve_)
    assert disp.ax_.get_xlabel() == "epoch" and disp.ax_.get_ylabel() == "loss"
    assert disp.ax_.get_title() == "MLPClassifier"
    assert disp.figure_ is disp.ax_.figure
    plt.close("all")


def test_plot_on_given_axes_with_kwargs():
    fig, ax = plt.subplots()
    disp = LossCurveDisplay({"a": [3, 2, 1]}).plot(ax=ax, color="red")
    assert disp.ax_ is ax and disp.figure_ is fig
    assert disp.lines_["a"].get_color() == "red"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a"]
    plt.close("all")


def test_learning_rate_display_plot():
    disp = LearningRateDisplay({"learning rate": [0.1, 0.05]}).plot()
    assert disp.ax_.get_ylabel() == "learning rate"
    np.testing.assert_array_equal(disp.lines_["learning rate"].get_ydata(),
                                  [0.1, 0.05])
    plt.close("all")


def test_solver_without_curves_is_a_clear_error():
    reg = MLPRegressor(solver="lbfgs", hidden_layer_sizes=(3,), max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)
    with pytest.raises(ValueError, match="recorded no loss_curve_"):
        LossCurveDisplay.from_estimator(reg)


def test_loss_curve_draws_the_validation_loss_with_early_stopping():
    clf = _fit(early_stopping=True, n_iter_no_change=50)
    disp = LossCurveDisplay.from_estimator(clf)
    np.testing.assert_array_equal(disp.lines_["validation loss"].get_ydata(),
                                  clf.validation_loss_curve_)
    plt.close("all")


def test_learning_rate_display_from_a_fitted_schedule():
    # Step decay: 0.1 for 3 epochs, then 0.01 (the formula is the oracle).
    clf = _fit(solver="sgd", learning_rate="step", learning_rate_init=0.1,
               lr_step_size=3, lr_gamma=0.1)
    disp = LearningRateDisplay.from_estimator(clf)
    line = disp.lines_["learning rate"]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 8))
    np.testing.assert_allclose(line.get_ydata(),
                               [0.1] * 3 + [0.01] * 3 + [0.001], rtol=1e-12)
    plt.close("all")


def test_lr_finder_display_draws_the_range_test():
    from fastbp import lr_find
    from fastbp.plotting import LRFinderDisplay

    clf = MLPClassifier((8,), solver="sgd", batch_size=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        disp = LRFinderDisplay.from_estimator(
            clf, X, y, lr_find_params={"min_lr": 1e-4, "max_lr": 10.0,
                                       "num_steps": 40})
        result = lr_find(clf, X, y, min_lr=1e-4, max_lr=10.0, num_steps=40)
    line = disp.lines_["loss"]
    np.testing.assert_array_equal(line.get_xdata(), result.learning_rates_)
    np.testing.assert_array_equal(line.get_ydata(), result.losses_)
    assert disp.ax_.get_xscale() == "log"
    assert disp.ax_.get_xlabel() == "learning rate"
    assert disp.ax_.get_title() == "MLPClassifier"
    assert result.suggestion_ is not None and disp.suggestion == result.suggestion_
    point = disp.lines_["suggestion"]
    at = list(result.learning_rates_).index(result.suggestion_)
    assert list(point.get_xdata()) == [result.suggestion_]
    assert list(point.get_ydata()) == [result.losses_[at]]
    # From the result, on given axes.
    fig, ax = plt.subplots()
    again = result.plot(ax=ax, color="green")
    assert again.ax_ is ax and again.lines_["loss"].get_color() == "green"
    plt.close("all")


def test_lr_finder_display_marks_a_suggestion_between_rates():
    from fastbp.plotting import LRFinderDisplay

    disp = LRFinderDisplay([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0], suggestion=10**-1.5)
    point = disp.plot().lines_["suggestion"]
    assert point.get_ydata()[0] == pytest.approx(2.0)  # halfway in log rate
    plt.close("all")
