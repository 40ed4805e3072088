"""
Loss and validation-loss curves
===============================

With ``early_stopping=True`` fastbp records, per epoch, the training loss
(``loss_curve_``, as scikit-learn), the loss on the held-out validation
split (``validation_loss_curve_``, fastbp's addition) and the validation
score (``validation_scores_``). ``LossCurveDisplay`` draws the two losses.

    pip install "fastbp[plot]" && python examples/plot_loss_curves.py
"""

from sklearn.datasets import load_digits

from fastbp import MLPClassifier
from fastbp.plotting import LossCurveDisplay


def main(max_iter=40):
    X, y = load_digits(return_X_y=True)
    clf = MLPClassifier((64,), early_stopping=True, validation_fraction=0.2,
                        max_iter=max_iter, n_iter_no_change=max_iter,
                        random_state=0).fit(X / 16, y)
    print(f"{clf.n_iter_} epochs; best validation score "
          f"{clf.best_validation_score_:.3f}")
    return clf


def plot(clf):
    display = LossCurveDisplay.from_estimator(clf)
    display.ax_.set_yscale("log")
    return display


if __name__ == "__main__":
    plot(main())
