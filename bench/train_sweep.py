"""Training steps at every shape: fastbp against scikit-learn, wide minibatches.

Sweeps network shape x minibatch size x threads (threadpoolctl caps every
BLAS pool and fastbp's own) and times ``partial_fit`` on STEPS minibatches
(adam, the same starting weights in both), contenders one after the other
(see ``predict_sweep.timings``); prints per cell the median ratio
scikit-learn time / fastbp time (above 1: fastbp faster) and ms per step,
then the worst cell per thread count. The wide networks with batches of
32-256 rows are the fits whose products are wider than they are long, where
scikit-learn's BLAS threads each product.

    python bench/train_sweep.py                   # 1, 2, ... up to the cores
    python bench/train_sweep.py --threads 16 --batch 64 256
    python bench/train_sweep.py --quick
"""

import warnings

import numpy as np
from predict_sweep import NETWORKS, summarize, sweep_args, timings
from sklearn.neural_network import MLPClassifier as SkMLP
from threadpoolctl import threadpool_limits

import fastbp

BATCHES = (32, 64, 128, 256)
STEPS = 8  # minibatches per partial_fit call
BUDGET = 1.5  # seconds of calls per contender and cell (full); quick: a third


def contenders(d, hidden, classes, batch, dtype):
    """partial_fit of fastbp and of scikit-learn from the same weights, on
    STEPS minibatches of batch rows."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((STEPS * batch, d)).astype(dtype)
    y = np.arange(STEPS * batch) % classes
    kw = dict(hidden_layer_sizes=hidden, batch_size=batch, random_state=0,
              shuffle=False)
    ours, theirs = fastbp.MLPClassifier(**kw), SkMLP(**kw)
    classes_ = np.arange(classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.partial_fit(X, y, classes=classes_)
        theirs.partial_fit(X, y, classes=classes_)
    theirs.coefs_ = [w.copy() for w in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    return (lambda: ours.partial_fit(X, y), lambda: theirs.partial_fit(X, y))


def main():
    args, threads, budget, blas = sweep_args(__doc__, "batch", BATCHES, BUDGET)
    print(f"BLAS: {blas}; dtype {args.dtype}; {STEPS} steps a call; "
          f"budget {budget:.2f} s a cell")
    print("ratio = scikit-learn time / fastbp time (median of rounds); "
          "fastbp and scikit-learn ms per step")
    cells = []
    for d, hidden, classes in NETWORKS:
        for batch in args.batch:
            calls = contenders(d, hidden, classes, batch, args.dtype)
            for t in threads:
                with threadpool_limits(t), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r, a, b, spread = timings(calls, budget)
                name = f"{d}->{hidden}->{classes}"
                print(f"{name:>22} batch {batch:>4} threads {t:>2}: ratio {r:5.2f}"
                      f" [{spread[0]:4.2f}-{spread[1]:4.2f}]"
                      f"  fastbp {a / STEPS * 1e3:8.3f}  sklearn "
                      f"{b / STEPS * 1e3:8.3f}", flush=True)
                cells.append((t, r, spread, f"{name}, batch {batch}"))
    summarize(cells)


if __name__ == "__main__":
    main()
