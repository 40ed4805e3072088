"""Demo: ``python -m fastbp`` trains fastbp and scikit-learn side by side.

Both train the same network with the same settings and random_state on the
digits data bundled with scikit-learn, first with the default settings, then
with small minibatches; for each the script prints accuracies, fit times
(median of a few runs) and the speed ratio.
"""

import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP

from fastbp import MLPClassifier

# The defaults most users run first (adam, batch_size="auto": 200 rows),
# then small minibatches, where per-batch Python overhead dominates
# scikit-learn's time and fastbp gains most.
CASES = {
    "defaults (adam, batch 200)": {"hidden_layer_sizes": (100,), "max_iter": 30,
                                   "random_state": 0},
    "small batches (adam, batch 32)": {"hidden_layer_sizes": (100,),
                                       "batch_size": 32, "max_iter": 30,
                                       "random_state": 0},
}
REPEATS = 3


def _time_fit(make, X, y):
    times, model = [], None
    for _ in range(REPEATS):
        model = make()
        start = time.perf_counter()
        model.fit(X, y)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), model


def main():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, random_state=0, stratify=y
    )
    print(
        f"digits: {X_train.shape[0]} train / {X_test.shape[0]} test samples, "
        f"{X.shape[1]} features, 10 classes; median fit time of {REPEATS} runs"
    )
    for case, settings in CASES.items():
        rows = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for name, cls in [("fastbp", MLPClassifier), ("scikit-learn", SklearnMLP)]:
                seconds, model = _time_fit(lambda c=cls: c(**settings), X_train,
                                           y_train)
                rows.append((name, model.score(X_test, y_test), seconds, model.loss_))
        print(f"\n{case}: {settings}")
        print(f"{'':14}{'accuracy':>10}{'fit time':>12}{'final loss':>14}")
        for name, acc, seconds, loss in rows:
            print(f"{name:14}{acc:>10.4f}{seconds:>11.3f}s{loss:>14.6f}")
        print(f"fastbp is {rows[1][2] / rows[0][2]:.1f}x faster than scikit-learn "
              "here, at the same training trajectory.")


if __name__ == "__main__":
    main()
