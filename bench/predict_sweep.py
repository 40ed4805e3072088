"""Predict at every shape: fastbp against scikit-learn on the same weights.

Sweeps input width x hidden widths x rows x threads (threadpoolctl caps
every BLAS pool and fastbp's own), times ``predict_proba`` of both, one
after the other (A B A B ...), and prints per cell the median of the
per-round ratios scikit-learn time / fastbp time (above 1: fastbp faster;
each round times the two one after the other, after a pause), then the
worst cell.

    python bench/predict_sweep.py                 # 1, 2, ... up to the cores
    python bench/predict_sweep.py --threads 16 --rows 100 1000
    python bench/predict_sweep.py --quick
"""

import argparse
import gc
import os
import time
import warnings

import numpy as np
from sklearn.neural_network import MLPClassifier as SkMLP
from threadpoolctl import threadpool_info, threadpool_limits

import fastbp

# (inputs, hidden, classes): digits, MNIST-shaped, wide, text-like, one wide layer.
NETWORKS = [
    (64, (100,), 10),
    (784, (100,), 10),
    (784, (512, 256), 10),
    (2000, (256,), 5),
    (300, (1000,), 3),
]
ROWS = (1, 10, 100, 1000, 10000)
BUDGET = 1.0  # seconds of calls per contender and cell (full); quick: a third
SETTLE = 0.15  # seconds of idle before each contender's calls


def pair(d, hidden, classes, dtype):
    """A fastbp and a scikit-learn classifier with the same weights."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4 * classes, d)).astype(dtype)
    y = np.arange(4 * classes) % classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fastbp.MLPClassifier(hidden, max_iter=1, random_state=0).fit(X, y)
        theirs = SkMLP(hidden, max_iter=1, random_state=0).fit(X, y)
    theirs.coefs_ = [w.copy() for w in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    return ours, theirs


def timings(calls, budget, rounds=7):
    """Median over rounds of the ratio calls[1] / calls[0], each one's
    median time, and the lowest and highest round's ratio (on a shared VM
    a cell's rounds spread 20% and more: a median below 1 whose highest
    round is above 1 is within that noise). A round times each contender alone: a settle pause, then
    repeated calls for its share of the budget (OpenBLAS's pthreads workers
    spin about 0.1 s after a threaded call and would take the cores from the
    next contender's threads if the calls alternated one by one)."""
    for f in calls:  # warm-up: first-call costs, thread start
        f()
    secs = [[], []]
    ratios = []
    for _ in range(rounds):
        medians = []
        for i, f in enumerate(calls):
            time.sleep(SETTLE)
            gc.disable()
            ts, end = [], time.perf_counter() + budget / rounds
            try:
                while len(ts) < 3 or time.perf_counter() < end:
                    t = time.perf_counter()
                    f()
                    ts.append(time.perf_counter() - t)
            finally:
                gc.enable()
            medians.append(np.median(ts))
            secs[i] += ts
        ratios.append(medians[1] / medians[0])
    return (float(np.median(ratios)), float(np.median(secs[0])),
            float(np.median(secs[1])), (min(ratios), max(ratios)))


def sweep_args(doc, size, sizes, budget):
    """The sweeps' command line: --threads, --dtype, --quick and the
    sweep's own size option (--rows, --batch); returns the arguments, the
    thread counts (1, 2 and each power of two up to the cores, unless
    given), the budget a cell (a third with --quick) and the BLAS
    libraries' (API, kernels, version)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+")
    p.add_argument(f"--{size}", type=int, nargs="+", default=list(sizes))
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    threads = args.threads or sorted({1, 2} | {2**k for k in range(8) if 2**k <= cores})
    blas = sorted({(i["internal_api"], i.get("architecture"), i["version"])
                   for i in threadpool_info() if i["user_api"] == "blas"}, key=str)
    return args, threads, budget / 3 if args.quick else budget, blas


def main():
    args, threads, budget, blas = sweep_args(__doc__, "rows", ROWS, BUDGET)
    print(f"BLAS: {blas}; dtype {args.dtype}; budget {budget:.2f} s a cell")
    print("ratio = scikit-learn time / fastbp time (median of rounds); "
          "fastbp and scikit-learn medians in ms")
    cells = []
    rng = np.random.default_rng(1)
    for d, hidden, classes in NETWORKS:
        ours, theirs = pair(d, hidden, classes, args.dtype)
        for n in args.rows:
            X = rng.standard_normal((n, d)).astype(args.dtype)
            gap = np.abs(ours.predict_proba(X) - theirs.predict_proba(X)).max()
            assert gap < 1e-6, f"the two models differ by {gap}"
            for t in threads:
                with threadpool_limits(t):
                    r, a, b, spread = timings([lambda: ours.predict_proba(X),
                                               lambda: theirs.predict_proba(X)],
                                              budget)
                name = f"{d}->{hidden}->{classes}"
                print(f"{name:>22} rows {n:>6} threads {t:>2}: ratio {r:5.2f} "
                      f"[{spread[0]:4.2f}-{spread[1]:4.2f}]  "
                      f"fastbp {a * 1e3:8.3f}  sklearn {b * 1e3:8.3f}", flush=True)
                cells.append((t, r, spread, f"{name}, {n} rows"))
    summarize(cells)


def summarize(cells):
    """Per thread count: the worst median ratio, and the cells where fastbp
    was slower in every round (the ones the noise cannot explain)."""
    for t in sorted({c[0] for c in cells}):
        mine = [c for c in cells if c[0] == t]
        _, r, spread, where = min(mine, key=lambda c: c[1])
        slower = [c[3] for c in mine if c[2][1] < 1]
        print(f"worst at {t} thread(s): {r:.2f}x ({where}; rounds "
              f"{spread[0]:.2f}-{spread[1]:.2f}); slower in every round: "
              f"{'; '.join(slower) or 'none'}")


if __name__ == "__main__":
    main()
