"""A process forked after fastbp's threads ran works (issue 21).

Each case runs in its own Python process under a timeout, so a hang fails
the test instead of stalling the suite; inside it, children and
grandchildren are made by fork (as multiprocessing's default start method
on Linux, pre-forking servers and ``multiprocessing.Pool`` make them), each
waited for with its own deadline. A child must give the parent's results
bit for bit: it uses the same thread count.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")

# What every script starts with: data, a waiter with a deadline, and an
# equality check of nested results.
PRELUDE = '''
import os, signal, sys, threading, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import fastbp
from fastbp import MLPClassifier, MLPRegressor

rng = np.random.default_rng(0)
X = rng.standard_normal((3000, 60))
y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
yr = X[:, :3] @ [1.0, -2.0, 0.5]
BIG = np.tile(X, (3, 1))  # 9000 rows: predict runs on the threads


def wait(pid, seconds=60):
    """The child's exit status; kills it and fails if it hangs."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    sys.exit(f"HANG: child {pid} did not finish in {seconds} s")


def same(a, b):
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))


def in_child(check, depth=1):
    """Run check() in a forked child (and its own child, to depth); True
    when every one of them returned True."""
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            ok = bool(check()) and (depth == 1 or in_child(check, depth - 1))
        except BaseException as e:
            print("child failed:", repr(e), flush=True)
        os._exit(0 if ok else 1)
    return wait(pid) == 0
'''


def _run(body, timeout=240):
    """Run PRELUDE + body in a fresh interpreter; its output must end 'OK'."""
    code = PRELUDE + textwrap.dedent(body)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the script hung (over {timeout} s): {e.stdout} {e.stderr}")
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), (
        done.stdout[-3000:] + done.stderr[-3000:])


def test_every_call_works_in_a_child_and_grandchild_after_it_ran_threaded():
    _run('''
    clf = dict(hidden_layer_sizes=(128,), max_iter=2, random_state=0, n_jobs=2)
    base = MLPClassifier(**clf).fit(X, y)

    def partial():
        est = MLPClassifier(**clf)
        for chunk in np.array_split(np.arange(3000), 3):
            est.partial_fit(X[chunk], y[chunk], classes=[0, 1, 2])
        return est.coefs_

    calls = {
        "fit": lambda: MLPClassifier(**clf).fit(X, y).coefs_,
        "partial_fit": partial,
        "predict": lambda: base.predict(BIG),
        "predict_proba": lambda: base.predict_proba(BIG),
        "transform": lambda: base.transform(BIG),
        "jacobian": lambda: base.jacobian(X[:300]),
        "lbfgs": lambda: MLPRegressor(hidden_layer_sizes=(96,), solver="lbfgs",
                                      max_iter=5, random_state=0,
                                      n_jobs=2).fit(X, yr).coefs_,
        "newton": lambda: MLPRegressor(hidden_layer_sizes=(8,), solver="newton",
                                       max_iter=3, random_state=0,
                                       n_jobs=2).fit(X[:500], yr[:500]).coefs_,
    }
    for name, call in calls.items():
        expected = call()  # the parent runs it threaded first
        assert in_child(lambda: same(call(), expected), depth=2), name
        assert same(call(), expected), name  # the parent lost nothing
    print("OK")
    ''')


def test_a_child_works_while_another_parent_thread_is_inside_fastbp():
    """Forks land at random moments of a fit and a predict running in
    another thread (inside a job, between jobs, holding fastbp's locks):
    every child still fits and predicts, the parent's thread finishes."""
    _run('''
    params = dict(hidden_layer_sizes=(128, 64), max_iter=3, random_state=0, n_jobs=2)
    shared = MLPClassifier(**params)
    expected_fit = MLPClassifier(**params).fit(X, y).coefs_
    expected_out = MLPClassifier(**params).fit(X, y).predict_proba(BIG)
    stop = threading.Event()
    background = []

    def busy():
        while not stop.is_set():
            shared.fit(X, y)            # holds shared's fit lock throughout
            background.append(same(shared.coefs_, expected_fit)
                              and same(shared.predict_proba(BIG), expected_out))

    thread = threading.Thread(target=busy)
    thread.start()
    rng = np.random.default_rng(1)

    def child():
        # The same estimator the parent's thread is fitting, and a new one.
        fitted = shared.fit(X, y)
        return (same(fitted.coefs_, expected_fit)
                and same(MLPClassifier(**params).fit(X, y).predict_proba(BIG),
                         expected_out))

    for _ in range(12):
        time.sleep(rng.uniform(0, 0.08))
        assert in_child(child)
    stop.set()
    thread.join(120)
    assert not thread.is_alive() and background and all(background)
    print("OK")
    ''')


def test_a_child_forked_while_another_thread_holds_blas_gets_its_blas_back():
    """The thread holding BLAS on one thread is not in the child: the child
    restores BLAS's thread counts, and its own holds still nest."""
    _run('''
    from threadpoolctl import threadpool_info
    from fastbp import _pool
    from fastbp._threads import blas_one_thread

    def counts():
        return [lib["num_threads"] for lib in threadpool_info()
                if lib["user_api"] == "blas"]

    before = counts()
    held, release = threading.Event(), threading.Event()

    def holder():
        with blas_one_thread():
            held.set()
            release.wait(60)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(60)
    assert set(counts()) == {1} and _pool.blas_hold_depth() == 1

    def child():
        if counts() != before or _pool.blas_hold_depth() != 0:
            return False
        with blas_one_thread():
            ok = set(counts()) == {1}
        return ok and counts() == before

    ok = in_child(child)
    release.set()
    thread.join(60)
    assert ok and counts() == before and _pool.blas_hold_depth() == 0
    print("OK")
    ''')


def test_multiprocessing_pool_maps_a_trained_model():
    """The issue's script: train threaded, then map predict over a fork
    Pool; the workers' predictions are the parent's."""
    _run('''
    import multiprocessing as mp
    model = MLPClassifier((128,), max_iter=2, random_state=0, n_jobs=2).fit(X, y)
    chunks = np.array_split(np.tile(X, (20, 1)), 4)
    with mp.get_context("fork").Pool(2) as pool:
        result = pool.map_async(model.predict_proba, chunks)
        mapped = result.get(timeout=60)
    assert same(mapped, [model.predict_proba(c) for c in chunks])
    ctx = mp.get_context("fork")
    p = ctx.Process(target=lambda: MLPClassifier(n_jobs=2).fit(X, y))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    print("OK")
    ''')


def test_a_pre_forking_server_answers_with_the_warmed_model():
    """A server that loads and warms the model (one threaded predict), then
    forks a process per request, as gunicorn --preload or a prefork pool
    would: every answer is the parent's."""
    _run('''
    import json, socket, socketserver
    model = MLPClassifier((128,), max_iter=2, random_state=0, n_jobs=2).fit(X, y)
    model.predict_proba(BIG)  # warm-up on the threads, before any fork

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            rows = np.array(json.loads(self.rfile.readline()))
            out = model.predict_proba(np.tile(rows, (30, 1)))
            self.wfile.write((json.dumps(out.tolist()) + "\\n").encode())

    server = socketserver.ForkingTCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for i in range(5):
        rows = X[100 * i : 100 * i + 100]
        with socket.create_connection(server.server_address, timeout=60) as s:
            s.sendall((json.dumps(rows.tolist()) + "\\n").encode())
            answer = s.makefile().readline()
        got = np.array(json.loads(answer))
        assert np.array_equal(got, model.predict_proba(np.tile(rows, (30, 1))))
    server.shutdown()
    print("OK")
    ''')


def test_ctrl_c_in_a_forked_child_stops_its_threaded_fit():
    """A child's threaded fit stops on SIGINT between minibatches, as in the
    parent: a usable model and the interruption warning."""
    _run('''
    MLPClassifier((128,), max_iter=2, n_jobs=2, random_state=0).fit(X, y)

    def child():
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Never converged, whatever the machine's speed: this fit (53
            # epochs to convergence, 0.6 s on a fast core) ends only by the
            # signal.
            est = MLPClassifier((256, 128), max_iter=10_000, n_jobs=2,
                                n_iter_no_change=10_000,
                                random_state=0).fit(X, y)
        interrupted = any("interrupted" in str(w.message) for w in caught)
        return interrupted and est.n_iter_ < 10_000 and (
            np.isfinite(est.predict_proba(X)).all())

    assert in_child(child, depth=2)
    print("OK")
    ''')
