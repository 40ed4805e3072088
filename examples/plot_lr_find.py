"""
Finding a learning rate
=======================

``fastbp.lr_find`` runs Smith's learning-rate range test on a clone of an
estimator: one minibatch per step, the rate growing exponentially from
``min_lr`` to ``max_lr``, until the loss diverges. Its ``suggestion_`` is the
rate where the smoothed loss falls fastest; here, for sgd and adam on the
digits, it is compared with the default rate (0.001) over the same 10 epochs.

    pip install "fastbp[plot]" && python examples/plot_lr_find.py
"""

from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from fastbp import MLPClassifier, lr_find


def main(solvers=("sgd", "adam"), epochs=10):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, random_state=0, stratify=y)
    results, scores = {}, {}
    for solver in solvers:
        clf = MLPClassifier(solver=solver, max_iter=epochs, random_state=0)
        results[solver] = result = lr_find(clf, X_train, y_train)
        tuned = clone(clf).set_params(learning_rate_init=result.suggestion_)
        scores[solver] = {
            "default": clone(clf).fit(X_train, y_train).score(X_test, y_test),
            "suggested": tuned.fit(X_train, y_train).score(X_test, y_test),
        }
        print(f"{solver}: suggested learning_rate_init={result.suggestion_:.3g}; "
              f"test accuracy after {epochs} epochs "
              f"{scores[solver]['default']:.3f} at 0.001, "
              f"{scores[solver]['suggested']:.3f} at the suggestion")
    return results, scores


def plot(results):
    import matplotlib.pyplot as plt

    from fastbp.plotting import LRFinderDisplay

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4))
    for ax, (solver, result) in zip(axes, results.items()):
        LRFinderDisplay.from_lr_finder(result, ax=ax)
        ax.set_title(f"solver={solver!r}")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    results, _ = main()
    plot(results)
