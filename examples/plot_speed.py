"""
fastbp against scikit-learn: same trajectory, less time
=======================================================

Both libraries fit the same network with the same settings and seed on the
digits data: scikit-learn's defaults (adam, batch 200) and small-batch sgd
(batch 32). The loss curves agree (the same training trajectory), so the
fit times compare the same work. A small timing run, the median of three
fits each; ``bench/`` has the full benchmark. The numbers depend on the
machine that built this page.

    pip install "fastbp[plot]" && python examples/plot_speed.py
"""

import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLP

from fastbp import MLPClassifier

SETTINGS = {
    "defaults (adam, batch 200)": {},
    "sgd, batch 32": {"solver": "sgd", "batch_size": 32, "learning_rate_init": 0.01},
}


def _median_fit(cls, X, y, params, repeats):
    times = []
    for _ in range(repeats):
        est = cls(**params)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        times.append(time.perf_counter() - start)
    return est, float(np.median(times))


def main(max_iter=15, repeats=3):
    X, y = load_digits(return_X_y=True)
    X = X / 16
    results = {}
    for name, extra in SETTINGS.items():
        params = dict(hidden_layer_sizes=(100,), max_iter=max_iter,
                      random_state=0) | extra
        ours, t_ours = _median_fit(MLPClassifier, X, y, params, repeats)
        theirs, t_theirs = _median_fit(SklearnMLP, X, y, params, repeats)
        gap = np.abs(np.array(ours.loss_curve_) - theirs.loss_curve_).max()
        results[name] = {"fastbp": t_ours, "scikit-learn": t_theirs,
                         "loss_gap": gap}
        print(f"{name}: fastbp {t_ours * 1e3:.0f} ms, scikit-learn "
              f"{t_theirs * 1e3:.0f} ms ({t_theirs / t_ours:.1f}x); "
              f"loss curves differ by {gap:.1e}")
    return results


def plot(results):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(results)
    pos = np.arange(len(names))
    for shift, lib in [(-0.2, "fastbp"), (0.2, "scikit-learn")]:
        ax.barh(pos + shift, [results[n][lib] for n in names], 0.4, label=lib)
    for p, n in zip(pos, names, strict=True):
        ratio = results[n]["scikit-learn"] / results[n]["fastbp"]
        ax.text(results[n]["scikit-learn"], p + 0.2, f"  {ratio:.1f}x", va="center")
    ax.set_yticks(pos, names)
    ax.set_xlabel("fit time (s), digits, 15 epochs")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    plot(main())
