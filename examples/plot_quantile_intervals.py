"""
Prediction intervals from quantile networks
===========================================

Three ``MLPRegressor(loss="quantile")`` models, at the 5%, 50% and 95%
quantiles, trained on data whose noise grows with ``|x|``: the 5% and 95%
models bound a 90% prediction interval that widens where the noise does.
Its coverage on held-out data is measured and printed beside that of
``HistGradientBoostingRegressor(loss="quantile")``, the reference. The
pinball loss's gradient is piecewise constant, so a constant learning rate
keeps jumping around the optimum: ``learning_rate="cosine"`` anneals it.

    pip install "fastbp[plot]" && python examples/plot_quantile_intervals.py
"""

import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning

from fastbp import MLPRegressor

QUANTILES = (0.05, 0.5, 0.95)


def make_data(n, seed):
    """y = sin(2 x) + noise whose scale grows from 0.2 at x = 0 to 1.2."""
    rng = np.random.RandomState(seed)
    x = rng.uniform(-2, 2, n)
    return x[:, None], np.sin(2 * x) + (0.2 + 0.5 * np.abs(x)) * rng.randn(n)


def main(n_samples=20000, max_iter=60):
    X, y = make_data(n_samples, 0)
    X_test, y_test = make_data(n_samples, 1)
    mlp, hgb = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for q in QUANTILES:
            mlp[q] = MLPRegressor("quantile", quantile=q,
                                  hidden_layer_sizes=(32, 32),
                                  learning_rate_init=0.01,
                                  learning_rate="cosine", batch_size=200,
                                  max_iter=max_iter, n_iter_no_change=max_iter,
                                  random_state=0).fit(X, y)
            hgb[q] = HistGradientBoostingRegressor(
                loss="quantile", quantile=q, random_state=0).fit(X, y)
    coverage = {}
    for name, models in (("MLPRegressor", mlp), ("HistGradientBoosting", hgb)):
        lo, hi = models[0.05].predict(X_test), models[0.95].predict(X_test)
        inside = (y_test >= lo) & (y_test <= hi)
        below_median = y_test <= models[0.5].predict(X_test)
        coverage[name] = (inside.mean(), below_median.mean(), np.mean(hi - lo))
        print(f"{name:>20}: 90% interval covers {inside.mean():.3f} of held-out "
              f"y, mean width {np.mean(hi - lo):.3f}; {below_median.mean():.3f} "
              "of y below the median model")
    return mlp, hgb, coverage, (X_test, y_test)


def plot(mlp, hgb, coverage, test):
    import matplotlib.pyplot as plt

    X_test, y_test = test
    grid = np.linspace(-2, 2, 400)[:, None]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.scatter(X_test[:2000, 0], y_test[:2000], s=2, color="0.7",
               label="held-out data")
    for name, models, color in (("MLPRegressor", mlp, "C0"),
                                ("HistGradientBoosting", hgb, "C1")):
        inside = coverage[name][0]
        ax.fill_between(grid[:, 0], models[0.05].predict(grid),
                        models[0.95].predict(grid), color=color, alpha=0.2,
                        label=f"{name}: 90% interval, covers {inside:.1%}")
        ax.plot(grid[:, 0], models[0.5].predict(grid), color=color,
                label=f"{name}: median")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    import matplotlib.pyplot as plt

    plot(*main())
    plt.show()
