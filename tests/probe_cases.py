"""One probe case: a JSON description of data and parameters, built and run.

``tests/test_probe.py`` draws descriptions with hypothesis and runs them in
batches in child processes (``python probe_cases.py < cases.json``), so a
crash or a hang is caught and pinned to its case. For each case the child
prints a ``start`` line before running it and a ``done`` line with the
outcome after, flushed, one JSON object per line:

- ``ok``: fit succeeded and every output (predict, predict_proba, transform,
  score, a partial_fit step, a pickle round trip) is finite and of the right
  shape, or refused with a "not finite" ValueError;
- ``refused``: fit raised a ValueError or TypeError with a message, and the
  estimator was left unfitted;
- ``wrong``: anything else (another exception, a bad shape, NaN output, an
  empty message, a refused fit that left a model behind), with the reason.

Run one case by hand: ``echo '[{...}]' | python tests/probe_cases.py``.
"""

import json
import os
import pickle
import signal
import sys
import time
import traceback
import warnings

import numpy as np
import scipy.sparse as sp

from fastbp import MLPClassifier, MLPRegressor


def build(case):
    """(estimator, X, y, sample_weight) of a description."""
    rng = np.random.RandomState(case["seed"])
    n, p = case["n_samples"], case["n_features"]
    X = rng.randn(n, p) * case["scale"]
    if case["dtype"] == "bool":
        X = X > 0
    else:
        X = X.astype(case["dtype"])
    layout = case["layout"]
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "strided":
        X = np.repeat(np.repeat(X, 2, axis=0), 3, axis=1)[::2, ::3]
    elif layout in ("csr", "csc") and X.dtype.kind != "b" and X.itemsize > 2:
        X = X * (rng.rand(n, p) < 0.5)
        X = sp.csr_matrix(X) if layout == "csr" else sp.csc_matrix(X)
    target = case["target"]
    if target == "classes":
        y = rng.randint(case["n_classes"], size=n)
        y = np.array(["a", "b", "c"])[y] if case["labels"] == "str" else y
    elif target == "multilabel":
        y = (rng.rand(n, 3) < 0.5).astype(int)
    else:
        y = rng.randn(n, case["n_targets"]) * case["y_scale"]
        if target == "counts":
            y = np.abs(y).round()
        y = y[:, 0] if case["n_targets"] == 1 else y
    sample_weight = None
    if case["weights"] == "random":
        sample_weight = rng.rand(n)
    elif case["weights"] == "some zero":
        sample_weight = (rng.rand(n) < 0.7).astype(float)
    cls = MLPClassifier if target in ("classes", "multilabel") else MLPRegressor
    return cls(**case["params"]), X, y, sample_weight


def _finite_output(est, method, X, shape):
    """None if est.method(X) is finite and of the shape, else the problem."""
    try:
        out = getattr(est, method)(X)
    except ValueError as e:
        return None if "not finite" in str(e) else f"{method}: ValueError: {e}"
    out = np.asarray(out)
    if out.shape != shape:
        return f"{method} has shape {out.shape}, expected {shape}"
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        return f"{method} is not finite"
    return None


def _check_fitted(est, X, y, sample_weight):
    n = X.shape[0]
    classifier = isinstance(est, MLPClassifier)
    if not all(np.isfinite(a).all() for a in est.coefs_ + est.intercepts_):
        return "fit left non-finite weights"
    y_shape = (n,) if np.ndim(y) == 1 else (n, np.shape(y)[1])
    expected = {"predict": y_shape}
    if classifier:
        expected["predict_proba"] = (n, max(2, est.n_outputs_))
    if len(est.coefs_) > 1:
        expected["transform"] = (n, est.coefs_[-1].shape[0])
    for method, shape in expected.items():
        problem = _finite_output(est, method, X, shape)
        if problem:
            return problem
    clone = pickle.loads(pickle.dumps(est))
    try:
        same = np.array_equal(clone.predict(X), est.predict(X))
    except ValueError:
        same = True  # not finite for both
    if not same:
        return "a pickled copy predicts differently"
    if hasattr(est, "partial_fit") and not est.early_stopping:
        try:
            est.partial_fit(X, y, sample_weight=sample_weight)
        except (ValueError, TypeError) as e:
            if not str(e):
                return f"partial_fit raised {type(e).__name__} without a message"
        else:
            problem = _finite_output(est, "predict", X, y_shape)
            if problem:
                return "after partial_fit: " + problem
    return None


def run(case):
    """The outcome of one description: (kind, detail)."""
    fault = case.get("fault")  # the harness's own test injects these
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if fault == "hang":
        time.sleep(3600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if fault == "raise":
                raise KeyError("injected")
            est, X, y, sample_weight = build(case)
            try:
                est.fit(X, y, sample_weight=sample_weight)
            except (ValueError, TypeError) as e:
                if not str(e):
                    return "wrong", f"{type(e).__name__} without a message"
                if hasattr(est, "coefs_"):
                    return "wrong", "a refused fit left a model behind"
                return "refused", f"{type(e).__name__}: {str(e)[:120]}"
            problem = _check_fitted(est, X, y, sample_weight)
        except Exception:  # anything else is a finding
            return "wrong", traceback.format_exc(limit=-3)
    return ("wrong", problem) if problem else ("ok", "")


def main():
    for i, case in enumerate(json.load(sys.stdin)):
        print(json.dumps({"start": i}), flush=True)
        kind, detail = run(case)
        print(json.dumps({"done": i, "kind": kind, "detail": detail}), flush=True)


if __name__ == "__main__":
    main()
