"""
Newton, L-BFGS and Adam: convergence of the training objective
==============================================================

``solver="newton"`` (trust-region Newton-CG with the network's exact
Hessian-vector products) against scikit-learn's ``lbfgs`` and ``adam`` on
the same network. A callback records the full-batch objective
(``loss_gradient``: the loss plus the L2 term) of the model after every
iteration or epoch, through the ``fitted_estimator`` that scikit-learn's
callback framework hands it, with the time since the fit began.

    pip install "fastbp[plot]" && python examples/plot_solver_convergence.py
"""

import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier


class ObjectiveTrace:
    """Records (seconds, objective) at the end of every epoch or iteration."""

    def __init__(self):
        self.trace = []

    def setup(self, estimator, context):
        self.start = time.perf_counter()

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context, *, X=None, y=None,
                        fitted_estimator=None):
        if context.task_name != "fit" and fitted_estimator is not None:
            seconds = time.perf_counter() - self.start
            self.trace.append((seconds, fitted_estimator.loss_gradient(X, y)[0]))


def main(max_iter=60):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    traces, fits = {}, {}
    for solver in ("newton", "lbfgs", "adam"):
        trace = ObjectiveTrace()
        clf = MLPClassifier((10,), activation="tanh", solver=solver, alpha=1.0,
                            max_iter=max_iter, tol=1e-10, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits[solver] = clf.set_callbacks(trace).fit(X, y)
        traces[solver] = np.array(trace.trace)
        print(f"{solver}: {len(trace.trace)} steps, objective {trace.trace[-1][1]:.6f}")
    return traces, fits, X, y


def plot(traces):
    import matplotlib.pyplot as plt

    best = min(t[:, 1].min() for t in traces.values())
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for solver, t in traces.items():
        gap = t[:, 1] - best + 1e-16
        by_step.semilogy(np.arange(1, len(t) + 1), gap, label=solver)
        by_time.semilogy(t[:, 0] * 1e3, gap, label=solver)
    by_step.set_xlabel("iteration (newton, lbfgs) or epoch (adam)")
    by_time.set_xlabel("milliseconds since the fit began")
    by_step.set_ylabel("objective - best objective seen")
    by_step.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    plot(main()[0])
