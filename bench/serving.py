"""Per-call cost at serving sizes: fastbp against onnxruntime and scikit-learn.

The digits model (64 -> 100 -> 10, relu, fitted in float32 and in float64)
as fastbp, as onnxruntime runs its ``fastbp.to_onnx`` export (one intra-op
thread, sequential) and as scikit-learn's MLPClassifier with the same
weights. Prints microseconds per call of predict, predict_proba, transform
and score at 1, 10 and 100 rows already contiguous in the model's dtype,
and predict_proba on batches of every size from 1 to 100 in turn:
the best over rounds of each round's median, contenders taking turns
(A B C A B C ...). fastbp still validates its input in full; onnxruntime
checks type and shape. transform is fastbp's alone; score is fastbp's and
scikit-learn's. Ratios are the other's time over fastbp's (above 1: fastbp
faster).

    PYTHONPATH=. python bench/serving.py             # about 40 s
    PYTHONPATH=. python bench/serving.py --rows 1 --budget 0.5
"""

import argparse
import gc
import itertools
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier as SkMLP
from threadpoolctl import threadpool_info, threadpool_limits

import fastbp

ROWS = (1, 10, 100)


def models(dtype):
    """fastbp, onnxruntime session (or None) and scikit-learn on one set of
    digits weights in dtype, and the digits data in dtype."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fastbp.MLPClassifier((100,), max_iter=20, random_state=0).fit(X, y)
        theirs = SkMLP((100,), max_iter=1, random_state=0).fit(X, y)
    theirs.coefs_ = [w.copy() for w in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    try:
        import onnxruntime as ort
    except ImportError:
        return ours, None, theirs, X, y
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(
        fastbp.to_onnx(ours, dtype=dtype).SerializeToString(), opts,
        providers=["CPUExecutionProvider"])
    return ours, sess, theirs, X, y


def per_call(calls, budget, rounds=7):
    """name -> the least over rounds of the round's median seconds a call;
    each round gives every contender budget / rounds seconds in turn (on a
    shared machine whole rounds run slow: the best round is the call's
    cost, the median over rounds moved 2x between runs here)."""
    for f in calls.values():  # warm-up
        for _ in range(50):
            f()
    medians = {name: [] for name in calls}
    for _ in range(rounds):
        for name, f in calls.items():
            ts, end = [], time.perf_counter() + budget / rounds
            gc.disable()
            try:
                while len(ts) < 20 or time.perf_counter() < end:
                    t = time.perf_counter()
                    f()
                    ts.append(time.perf_counter() - t)
            finally:
                gc.enable()
            medians[name].append(np.median(ts))
    return {name: float(min(m)) for name, m in medians.items()}


def cells(dtype, rows, budget):
    ours, sess, theirs, X, y = models(dtype)
    for n in rows:
        Xs, ys = np.ascontiguousarray(X[:n]), y[:n]
        if sess is not None:
            assert np.array_equal(ours.predict(Xs), sess.run(["label"], {"X": Xs})[0])
        assert np.array_equal(ours.predict(Xs), theirs.predict(Xs))
        methods = {
            "predict": {"fastbp": lambda: ours.predict(Xs),
                        "onnxruntime": lambda: sess.run(["label"], {"X": Xs}),
                        "sklearn": lambda: theirs.predict(Xs)},
            "predict_proba": {"fastbp": lambda: ours.predict_proba(Xs),
                              "onnxruntime": lambda: sess.run(["probabilities"],
                                                              {"X": Xs}),
                              "sklearn": lambda: theirs.predict_proba(Xs)},
            "transform": {"fastbp": lambda: ours.transform(Xs)},
            "score": {"fastbp": lambda: ours.score(Xs, ys),
                      "sklearn": lambda: theirs.score(Xs, ys)},
        }
        for method, calls in methods.items():
            if sess is None:
                calls.pop("onnxruntime", None)
            yield method, n, per_call(calls, budget)
    # A server's batches: every size from 1 to 100, in a random order.
    sizes = np.random.default_rng(0).permutation(np.arange(1, 101))
    batches = itertools.cycle([np.ascontiguousarray(X[:n]) for n in sizes])
    calls = {"fastbp": lambda: ours.predict_proba(next(batches)),
             "onnxruntime": lambda: sess.run(["probabilities"],
                                             {"X": next(batches)}),
             "sklearn": lambda: theirs.predict_proba(next(batches))}
    if sess is None:
        calls.pop("onnxruntime")
    yield "predict_proba", "1-100", per_call(calls, budget)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    p.add_argument("--dtype", choices=["float32", "float64"], nargs="+",
                   default=["float32", "float64"])
    p.add_argument("--budget", type=float, default=0.35,
                   help="seconds of calls per contender and cell")
    args = p.parse_args()
    blas = sorted({(i["internal_api"], i.get("architecture"), i["version"])
                   for i in threadpool_info() if i["user_api"] == "blas"}, key=str)
    print(f"BLAS: {blas}; one thread everywhere; µs per call (best round's median)")
    print(f"{'':7} {'method':>13} {'rows':>5} {'fastbp':>8} {'onnxrt':>8} "
          f"{'sklearn':>8} {'ort/fastbp':>10} {'skl/fastbp':>10}")
    with threadpool_limits(1):
        for dtype in args.dtype:
            for method, n, secs in cells(np.dtype(dtype), args.rows, args.budget):
                us = {k: v * 1e6 for k, v in secs.items()}
                a = us["fastbp"]
                row = [f"{us[k]:8.1f}" if k in us else f"{'-':>8}"
                       for k in ("fastbp", "onnxruntime", "sklearn")]
                ratios = [f"{us[k] / a:10.2f}" if k in us else f"{'-':>10}"
                          for k in ("onnxruntime", "sklearn")]
                print(f"{dtype:7} {method:>13} {n!s:>5} {' '.join(row)} "
                      f"{' '.join(ratios)}", flush=True)


if __name__ == "__main__":
    main()
