"""
Learning-rate schedules
=======================

Every stochastic solver follows the schedule named by ``learning_rate``,
one rate per epoch, recorded in ``learning_rate_curve_``: scikit-learn's
``"constant"`` and ``"invscaling"``, and fastbp's ``"step"``,
``"exponential"`` and ``"cosine"`` (with warm restarts through
``lr_cycle``), each optionally after a linear warm-up (``warmup_epochs``).

    pip install "fastbp[plot]" && python examples/plot_learning_rate_schedules.py
"""

from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier

SCHEDULES = {
    "constant": {},
    "invscaling": {"learning_rate": "invscaling", "power_t": 0.25},
    "step": {"learning_rate": "step", "lr_step_size": 10, "lr_gamma": 0.5},
    "exponential": {"learning_rate": "exponential", "lr_step_size": 10,
                    "lr_gamma": 0.5},
    "cosine, warm restarts": {"learning_rate": "cosine", "lr_cycle": 10,
                              "lr_cycle_mult": 2, "lr_min": 0.005},
    "warm-up, then cosine": {"learning_rate": "cosine", "warmup_epochs": 5},
}


def main(max_iter=40):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    fits = {}
    for name, params in SCHEDULES.items():
        clf = MLPClassifier((8,), solver="sgd", learning_rate_init=0.1,
                            max_iter=max_iter, n_iter_no_change=max_iter,
                            random_state=0, **params)
        fits[name] = clf.fit(X, y)
    return fits


def plot(fits):
    import matplotlib.pyplot as plt

    from fastbp.plotting import LearningRateDisplay

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, clf in fits.items():
        display = LearningRateDisplay.from_estimator(clf, ax=ax)
        display.lines_["learning rate"].set_label(name)
    ax.set_title("learning_rate_curve_ of sgd on iris")
    ax.legend()
    return fig


if __name__ == "__main__":
    plot(main())
