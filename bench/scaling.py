"""Training-step time against threads, and what the scaling model says.

For the bench's digits, regression and wide workloads, and a probe with
almost no work a step, times one minibatch step of fastbp at 1, 2, 4, ...
threads up to the machine's cores (every
power of two; ``--threads`` to choose), and prints per thread count the
best and median wall time per step, the CPU time per step, the ratio of
1 thread's median to this count's, and the model's prediction
(docs/design.md, "A scaling model"): its time per step and ratio from this
run's own 1-thread time and per-core rate, with the sum and barrier
constants fitted on the 2-core machine; beyond the machine's cores, the
model with those constants and with ones assumed for dedicated cores.
Last, the constants this run's points give (networks from TEAM_PARAMS
parameters on step as a team: barriers instead of the sum). A step's time is the
difference of two fits, E and 1 epochs, over the steps between them, so
fixed costs (validation, setup) drop out.

    PYTHONPATH=. python bench/scaling.py               # about 30 s here
    PYTHONPATH=. python bench/scaling.py --threads 1 2 4 8 16 --repeats 7
"""

import argparse
import math
import os
import threading
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_classification, make_regression
from threadpoolctl import threadpool_info, threadpool_limits

import fastbp

SETTLE = 0.25  # OpenBLAS's workers spin ~0.1 s after a threaded call
MIN_SHARE_ROWS = 16  # fastbp's least rows a thread in a shared step (_epoch)

# The model's constants, fitted (least squares, residuals relative to the
# 1-thread step) to three runs of this script's 1- and 2-thread medians on
# the 2-core Intel Xeon VM, OpenBLAS 0.3.30/0.3.31 SkylakeX kernels, float64
# (docs/design.md, "A scaling model"): seconds per parameter for each
# thread's share of the gradient sum (these points do not resolve it: set
# from the regression step's profile, 7 us of summing for 13,569
# parameters); and seconds of pool job and barrier per thread beyond the
# first (the VM's: its vCPUs stall each other), fitted with c_sum fixed.
SUM_PER_PARAM = 1e-9
SYNC_PER_THREAD = 18e-6
# Assumed for dedicated, idle cores (not measurable on this VM): a sum at a
# few times the in-cache add rate, and a pool job with its barrier costing
# what a futex wake and a spinning barrier do there.
DEDICATED = {"c_sum": 1e-9, "sync": 10e-6, "barrier": 0.2e-6}
# Networks of this many parameters or more step as a team (fastbp._epoch's
# TEAM_STEP_PARAMS): no gradient sum, 4 L barriers a step (L layers), each
# costing BARRIER_PER_THREAD per thread beyond the first; fitted as above to
# the wide network's points (the VM's stalls and the tiles' imbalance
# included); dedicated cores: a central barrier's arrival, a cache line.
TEAM_PARAMS = 1 << 15
BARRIER_PER_THREAD = 55e-6


def sum_rate(P=1 << 18):
    """Seconds per parameter to add one P-long float64 gradient into
    another (the thread-order sum's inner loop; 2 MB apart, as on the wide
    network): median of NumPy's in-place add."""
    g, h = np.ones(P), np.ones(P)
    ts = []
    for _ in range(200):
        t = time.perf_counter()
        np.add(g, h, out=g)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) / P


def core_rate(T, seconds=0.6):
    """Per-core GEMM rate with T cores busy over the rate of one alone: T
    Python threads each timing a one-thread 256 x 512 x 256 matmul (NumPy
    drops the GIL), median call against the one-thread median. Below 1
    where cores share a clock budget, caches, memory or (a VM) hosts."""
    a, b = np.ones((256, 512)), np.ones((512, 256))

    def calls(out):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            a @ b
            out.append(time.perf_counter() - t)

    with threadpool_limits(1):
        alone = []
        calls(alone)
        shares = [[] for _ in range(T)]
        threads = [threading.Thread(target=calls, args=(o,)) for o in shares]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return float(np.median(alone) / np.median([x for o in shares for x in o]))


def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


def regression(n=8000):
    X, y = make_regression(n, 40, noise=10, random_state=0)
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def wide(n=3000):
    return make_classification(n, 256, n_informative=64, n_classes=10,
                               random_state=0)


def narrow(n=16384):
    return make_classification(n, 16, random_state=0)


# name, data, estimator, hidden, activation, batch, epochs. The last one has
# almost no work a step (2048 rows x 145 parameters, just over the step
# rule's 2^18): its 2-thread step is mostly the pool's job and barrier.
WORKLOADS = [
    ("digits adam b200", digits, fastbp.MLPClassifier, (100,), "relu", 200, 25),
    ("regression tanh b64", regression, fastbp.MLPRegressor, (128, 64), "tanh",
     64, 4),
    ("wide adam b256", wide, fastbp.MLPClassifier, (512, 256), "relu", 256, 3),
    ("sync probe b2048", narrow, fastbp.MLPClassifier, (8,), "relu", 2048, 40),
]


def n_params(d, hidden, n_out):
    units = (d, *hidden, n_out)
    return sum((a + 1) * b for a, b in zip(units[:-1], units[1:]))


def step_seconds(est, hidden, act, batch, epochs, X, y, threads):
    """(wall, cpu) seconds a step: fits of epochs and of 1 epoch, differenced."""
    out = []
    for e in (1, epochs):
        m = est(hidden_layer_sizes=hidden, activation=act, batch_size=batch, max_iter=e, tol=0,
                n_iter_no_change=10**9, random_state=0, n_jobs=threads)
        time.sleep(SETTLE)
        w, c = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X, y)
        out.append((time.perf_counter() - w, time.process_time() - c))
    steps = (epochs - 1) * math.ceil(len(X) / batch)
    return ((out[1][0] - out[0][0]) / steps, (out[1][1] - out[0][1]) / steps)


def predicted(t1, P, batch, T, rate=1.0, c_sum=SUM_PER_PARAM,
              sync=SYNC_PER_THREAD, layers=1, barrier=BARRIER_PER_THREAD):
    """The model's seconds a step on T threads (docs/design.md): one
    thread's step t1 (rows' products and the per-parameter pass) shared by
    the threads the step rule lets in, at rate (the per-core rate with
    them all busy, over one core's alone), plus each thread's sum of the
    other threads' gradients over its P / T parameters, plus one pool job
    and barrier per extra thread; a team step (P >= TEAM_PARAMS) has no
    sum and 4 layers barriers instead."""
    T = max(1, min(T, batch // MIN_SHARE_ROWS))
    if T == 1:
        return t1
    if P >= TEAM_PARAMS:
        return t1 / (T * rate) + sync * (T - 1) + barrier * 4 * layers * (T - 1)
    return t1 / (T * rate) + c_sum * P * (T - 1) / T + sync * (T - 1)


def fit_constants(points):
    """(c_sum, sync) by least squares over (t_T, t1, P, T, rate) points of
    t_T - t1 / (T rate) = c_sum P (T - 1) / T + sync (T - 1), each point's
    residual relative to its t1 (small steps count as much as large)."""
    w = np.array([1 / t1 for _, t1, _, _, _ in points])
    A = np.array([[P * (T - 1) / T, T - 1] for _, _, P, T, _ in points])
    r = np.array([tT - t1 / (T * rate) for tT, t1, _, T, rate in points])
    (c_sum, sync), *_ = np.linalg.lstsq(A * w[:, None], r * w, rcond=None)
    return c_sum, sync


def main():
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+",
                   default=[2**k for k in range(8) if 2**k <= cores])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", nargs="+", help="workloads whose name has one of these")
    args = p.parse_args()
    threads = sorted(set(args.threads) | {1})
    blas = sorted({(i["internal_api"], i.get("architecture"), i["version"])
                   for i in threadpool_info() if i["user_api"] == "blas"}, key=str)
    print(f"{cores} cores; BLAS {blas}; float64; ms per step; {args.repeats} "
          "repeats, thread counts interleaved")
    rates = {T: 1.0 if T == 1 else core_rate(T) for T in threads}
    print("per-core GEMM rate with T cores busy / alone: " + ", ".join(
        f"T={T} {r:.2f}" for T, r in rates.items()))
    points, team_points = [], []
    for name, data, est, hidden, act, batch, epochs in WORKLOADS:
        if args.only and not any(s in name for s in args.only):
            continue
        X, y = data()
        n_out = len(np.unique(y)) if est is fastbp.MLPClassifier else 1
        P = n_params(X.shape[1], hidden, n_out if n_out > 2 else 1)
        runs = {T: [] for T in threads}
        for _ in range(args.repeats):
            for T in threads:
                runs[T].append(step_seconds(est, hidden, act, batch, epochs, X, y, T))
        t1 = float(np.median([w for w, _ in runs[1]]))
        print(f"\n{name}: {len(X)} rows, batch {batch}, {P} parameters "
              f"(at most {max(1, batch // MIN_SHARE_ROWS)} threads a step)")
        print(f"{'threads':>7} {'best':>8} {'median':>8} {'cpu':>8} "
              f"{'ratio':>6} {'model':>8} {'ratio':>6}")
        for T in threads:
            wall = [w for w, _ in runs[T]]
            cpu = float(np.median([c for _, c in runs[T]]))
            med = float(np.median(wall))
            model = predicted(t1, P, batch, T, rates[T], layers=len(hidden) + 1)
            print(f"{T:>7} {min(wall) * 1e3:8.3f} {med * 1e3:8.3f} {cpu * 1e3:8.3f} "
                  f"{t1 / med:6.2f} {model * 1e3:8.3f} {t1 / model:6.2f}", flush=True)
            if 1 < T <= batch // MIN_SHARE_ROWS and P < TEAM_PARAMS:
                points.append((med, t1, P, T, rates[T]))
            elif 1 < T <= batch // MIN_SHARE_ROWS:
                team_points.append((med, t1, 4 * (len(hidden) + 1), T, rates[T]))
        beyond = [T for T in (4, 8, 16, 64) if T > max(threads)]
        if beyond:
            for label, kw in (("fitted constants", {}),
                              ("dedicated cores", DEDICATED)):
                print(f"  model beyond these cores, {label}: " + ", ".join(
                    f"{T}: {predicted(t1, P, batch, T, layers=len(hidden) + 1, **kw) * 1e3:.3f} ms "
                    f"({t1 / predicted(t1, P, batch, T, layers=len(hidden) + 1, **kw):.2f}x)"
                    for T in beyond))
    if points:
        c_sum, sync = fit_constants(points)
        print(f"\nthis run's points fit {c_sum * 1e9:.2f} ns a parameter summed "
              f"and {sync * 1e6:.1f} us of sync a thread (the script's: "
              f"{SUM_PER_PARAM * 1e9:.2f} ns, {SYNC_PER_THREAD * 1e6:.1f} us); "
              f"an in-cache add here: {sum_rate() * 1e9:.2f} ns a parameter")
    if team_points:
        # t_T - t1 / (T rate) - sync (T - 1) = barrier b (T - 1), b barriers.
        _, sync = fit_constants(points) if points else (0, SYNC_PER_THREAD)
        a = np.array([b * (T - 1) / t1 for _, t1, b, T, _ in team_points])
        r = np.array([(tT - t1 / (T * rate) - sync * (T - 1)) / t1
                      for tT, t1, _, T, rate in team_points])
        print(f"team steps fit {a @ r / (a @ a) * 1e6:.1f} us a barrier a thread "
              f"(the script's: {BARRIER_PER_THREAD * 1e6:.1f} us)")


if __name__ == "__main__":
    main()
