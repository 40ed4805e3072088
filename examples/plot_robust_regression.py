"""
Robust regression: Huber and absolute error against squared error
=================================================================

5% of the training targets are gross outliers (off by 10 to 30). Squared
error chases them; ``loss="huber"`` (quadratic within ``huber_delta`` of the
prediction, linear beyond) and ``loss="absolute_error"`` (the conditional
median) hardly notice. Each model's error against the clean function on
held-out inputs is printed and plotted.

    pip install "fastbp[plot]" && python examples/plot_robust_regression.py
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_squared_error

from fastbp import MLPRegressor

LOSSES = {"squared_error": {}, "huber": {"huber_delta": 0.5},
          "absolute_error": {}}


def clean(X):
    return np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]


def main(n_samples=4000, outliers=0.05, max_iter=60):
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, (n_samples, 2))
    y = clean(X) + 0.1 * rng.randn(n_samples)
    bad = rng.rand(n_samples) < outliers
    y[bad] += rng.choice([-1, 1], bad.sum()) * rng.uniform(10, 30, bad.sum())
    X_test = rng.uniform(-2, 2, (n_samples, 2))
    models, errors = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for loss, params in LOSSES.items():
            models[loss] = MLPRegressor(
                loss, hidden_layer_sizes=(32,), learning_rate_init=0.01,
                learning_rate="cosine", max_iter=max_iter,
                n_iter_no_change=max_iter, random_state=0, **params).fit(X, y)
            errors[loss] = mean_squared_error(clean(X_test),
                                              models[loss].predict(X_test))
            print(f"{loss:>15}: mean squared error against the clean function "
                  f"{errors[loss]:.4f}")
    return models, errors, (X, y, bad)


def plot(models, errors, data):
    import matplotlib.pyplot as plt

    X, y, bad = data
    grid = np.column_stack([np.linspace(-2, 2, 400), np.zeros(400)])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    near = np.abs(X[:, 1]) < 0.1  # the slice x1 ~ 0 the curves show
    ax.scatter(X[near & ~bad, 0], y[near & ~bad], s=3, color="0.6",
               label="training data (x1 near 0)")
    ax.scatter(X[near & bad, 0], np.clip(y[near & bad], -4, 4), s=12,
               marker="x", color="C3", label="outliers (clipped to the view)")
    ax.plot(grid[:, 0], clean(grid), color="k", lw=1, label="clean function")
    for loss, model in models.items():
        ax.plot(grid[:, 0], model.predict(grid),
                label=f"{loss} (test MSE {errors[loss]:.4f})")
    ax.set_ylim(-4, 4)
    ax.set_xlabel("x0 (x1 = 0)")
    ax.set_ylabel("y")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    import matplotlib.pyplot as plt

    plot(*main())
    plt.show()
