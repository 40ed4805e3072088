"""fastbp's own threads: steps and predicts shared over rows, n_jobs, BLAS held
on one thread. Results are compared, never timed."""

import os
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from joblib import cpu_count
from conftest import RTOL
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification
from threadpoolctl import threadpool_info, threadpool_limits

from fastbp import MLPClassifier, MLPRegressor, _epoch, _pool, _reference
from fastbp._network import bn_sizes, glorot_init, make_plan
from fastbp._optimizers import SOLVERS, STATE_ARRAYS
from fastbp._settings import Settings
from fastbp._threads import blas_one_thread, effective_n_threads

# (20, 64, 32, 3): 3523 parameters; batches of 128 rows are 451k multiply-adds,
# above the rule's threshold, so two threads share them.
UNITS = [20, 64, 32, 3]
BATCH = 128


def _problem(dtype, sparse=False, dropout=0.0, batch_norm=False, n=300, rows=BATCH):
    rng = np.random.RandomState(0)
    plan = make_plan(UNITS, "relu", "softmax", "log_loss", rows, not sparse,
                     dropout=dropout, batch_norm=batch_norm)
    params = glorot_init(UNITS, "relu", rng, np.float64)
    if batch_norm:
        params = np.r_[params, rng.uniform(0.5, 1.5, bn_sizes(UNITS, True)[0])]
    params = params.astype(dtype)
    dense = rng.randn(n, UNITS[0])
    csr = None
    X = dense.astype(dtype)
    if sparse:
        dense[rng.rand(*dense.shape) < 0.7] = 0
        m = sp.csr_matrix(dense.astype(dtype))
        csr = (m.data, m.indices.astype(np.intp), m.indptr.astype(np.intp))
        X = np.empty((0, UNITS[0]), dtype)
    Y = np.eye(3)[rng.randint(3, size=n)].astype(dtype)
    sw = rng.uniform(0.5, 2, n).astype(dtype)
    return plan, params, X, csr, Y, sw


def _epochs(mod, problem, solver, n_threads, epochs=2, clip=0.0):
    plan, params, X, csr, Y, sw = problem
    params = params.copy()
    grad = np.empty_like(params)
    work = np.empty(plan.work_size, params.dtype)
    state = np.zeros(STATE_ARRAYS[solver] * params.size, params.dtype)
    running = np.zeros(plan.n_running, params.dtype) if plan.n_running else None
    order = None if csr is not None else np.random.RandomState(1).permutation(
        len(Y)).astype(np.intp)
    settings = Settings(SOLVERS[solver], 0.01, alpha=1e-3, l1=1e-4,
                        weight_decay=0.1, clip_norm=clip, n_threads=n_threads)
    step, losses = 0, []
    for epoch in range(epochs):
        loss, step = mod.run_epoch(plan, settings, X, csr, Y, sw, order, BATCH,
                                   params, grad, work, state, step,
                                   seed=epoch + 3, running=running)
        losses.append(loss)
    return losses, params, state


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", ["dense", "sparse", "dropout", "clip"])
def test_threaded_epochs_equal_one_thread_and_twin(dtype, solver, kind, engine):
    # Every solver: threaded steps update their share of the parameters
    # (state arrays a whole model apart); with clipping, after the threads.
    problem = _problem(dtype, sparse=kind == "sparse",
                       dropout=0.3 if kind == "dropout" else 0.0)
    clip = 0.5 if kind == "clip" else 0.0
    jobs = _pool.jobs()
    two = _epochs(_epoch, problem, solver, 2, clip=clip)
    # The rows really were shared (the bits cannot tell: a team's tiled
    # products may give one thread's bits, or not, by the BLAS kernel).
    assert _pool.jobs() > jobs
    again = _epochs(_epoch, problem, solver, 2, clip=clip)
    for a, b in zip(two, again, strict=True):  # same thread count: same bits
        assert_array_equal(a, b)
    jobs = _pool.jobs()
    one = _epochs(_epoch, problem, solver, 1, clip=clip)
    assert _pool.jobs() == jobs
    twin = _epochs(_reference, problem, solver, 2, clip=clip)
    tol = {"rtol": RTOL[dtype], "atol": 1e-5 if dtype == np.float32 else 1e-11}
    for other in (one, twin):
        for a, b in zip(two, other, strict=True):
            assert np.isfinite(a).all()
            assert_allclose(a, b, **tol)


@pytest.fixture(params=["team", "shares"])
def engine(request, monkeypatch):
    """Both threaded step engines, whatever the size rule picks."""
    monkeypatch.setattr(_epoch, "TEAM_STEP_PARAMS", 0 if request.param == "team" else 1 << 62)
    return request.param


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", ["dense", "dropout", "clip", "no order"])
@pytest.mark.parametrize("per_thread", [1, 4])
def test_team_steps_same_threads_same_bits(dtype, solver, kind, per_thread, monkeypatch):
    # One workspace and one gradient, tiles from the shape and T: the same T
    # gives the same bits (whichever thread takes a tile), every T agrees
    # with one thread to rounding.
    monkeypatch.setattr(_epoch, "TEAM_STEP_PARAMS", 0)
    monkeypatch.setattr(_epoch, "TRAIN_TILES_PER_THREAD", per_thread)
    problem = _problem(dtype, dropout=0.3 if kind == "dropout" else 0.0)
    clip = 0.5 if kind == "clip" else 0.0
    run = _epochs
    if kind == "no order":  # the batch's rows read in place, no gather
        def run(mod, problem, solver, n_threads, clip=0.0):
            plan, params, X, _, Y, sw = problem
            params = params.copy()
            state = np.zeros(STATE_ARRAYS[solver] * params.size, params.dtype)
            settings = Settings(SOLVERS[solver], 0.01, alpha=1e-3, l1=1e-4,
                                n_threads=n_threads)
            loss, _ = mod.run_epoch(plan, settings, X, None, Y, sw, None, BATCH, params,
                                    np.empty_like(params), np.empty(plan.work_size, params.dtype),
                                    state, 0)
            return [loss], params, state
    one = run(_epoch, problem, solver, 1, clip=clip)
    tol = {"rtol": RTOL[dtype], "atol": 1e-5 if dtype == np.float32 else 1e-11}
    for n_threads in (2, 3, 5):
        first = run(_epoch, problem, solver, n_threads, clip=clip)
        for a, b in zip(first, run(_epoch, problem, solver, n_threads, clip=clip), strict=True):
            assert_array_equal(a, b)
        for a, b in zip(first, one, strict=True):
            assert np.isfinite(a).all()
            assert_allclose(a, b, **tol)


def test_train_tiles_rule():
    # About per-thread x T tiles, never under 16 rows or 32 columns but the
    # last, whole SIMD lanes; the longer extent split first.
    assert _epoch.train_tiles(16, 20, 3, 2) == (16, 3)
    assert _epoch.train_tiles(256, 256, 512, 1) == (256, 512)
    assert _epoch.train_tiles(256, 256, 512, 2) == (256, 256)
    assert _epoch.train_tiles(512, 256, 256, 2) == (256, 256)
    for rows, k, m in [(128, 20, 64), (200, 64, 100), (256, 512, 256), (64, 256, 512),
                       (2048, 784, 512), (512, 4096, 4096)]:
        for n_threads in (2, 3, 8, 64):
            chunk, panel = _epoch.train_tiles(rows, k, m, n_threads)
            n_tiles = -(-rows // chunk) * -(-m // panel)
            assert 1 <= n_tiles <= min(_epoch.PREDICT_RULE["max_tiles"],
                                       n_threads * _epoch.TRAIN_TILES_PER_THREAD)
            assert chunk >= min(rows, 16) and panel >= min(m, 32)
            assert panel % 8 == 0 or panel == m
            assert chunk * panel * k >= _epoch.TRAIN_TILE_WORK // 2 or n_tiles == 1


def test_batch_norm_steps_stay_on_one_thread(dtype):
    problem = _problem(dtype, batch_norm=True)
    for a, b in zip(_epochs(_epoch, problem, "adam", 2),
                    _epochs(_epoch, problem, "adam", 1), strict=True):
        assert_array_equal(a, b)


def test_small_steps_stay_on_one_thread(dtype):
    # 16-row batches: 56k multiply-adds, below the rule: bit-identical.
    plan, params, X, csr, Y, sw = _problem(dtype, rows=16)
    results = []
    for n_threads in (1, 2):
        p, grad, work = params.copy(), np.empty_like(params), np.empty(plan.work_size, dtype)
        state = np.zeros(params.size, dtype)
        _epoch.run_epoch(plan, Settings(SOLVERS["sgd"], 0.01, n_threads=n_threads),
                         X, csr, Y, sw, None, 16, p, grad, work, state, 0)
        results.append(p)
    assert_array_equal(*results)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_forward_does_not_depend_on_threads(dtype, sparse):
    plan, params, X, csr, Y, _ = _problem(dtype, sparse=sparse, rows=32)
    outs = []
    for n_threads in (1, 2, 3, 64, 65):
        out = np.full((len(Y), 3), np.nan, dtype)
        _epoch.forward(plan, X, csr, params, np.empty(plan.work_size, dtype), out,
                       None, n_threads)
        outs.append(out)
    for out in outs[1:]:
        assert_array_equal(out, outs[0])
    want = np.empty_like(outs[0])
    _reference.forward(plan, X, csr, params, None, want)
    assert_allclose(outs[0], want, rtol=RTOL[dtype], atol=1e-6)


def _within(seconds, call):
    """Run call in a daemon thread: a pool job stuck at a barrier fails the
    test after seconds instead of stalling the suite."""
    errors = []

    def run():
        try:
            call()
        except BaseException as e:  # reported in the test's thread
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the pass did not finish in {seconds} s"
    if errors:
        raise errors[0]


# A block's products are split into tiles (chunks of rows x panels of
# columns), which all threads share when there are few blocks: layer by
# layer where a layer has panels (wide), each row chunk through all the
# layers where none has (narrow) and there is no batch norm. A small tile
# work makes these networks' products many tiles.
WIDE = [150, 520, 300, 4]
NARROW = [64, 100, 60, 10]


@pytest.mark.parametrize("n_threads", [2, 5, 64])
@pytest.mark.parametrize("units", [WIDE, NARROW], ids=["wide", "narrow"])
def test_a_one_block_pass_ends_without_workers_still_waking(dtype, units, n_threads,
                                                          monkeypatch):
    """A one-block pass on T threads: the caller withdraws the workers that
    have not started by the time the first phase's items are all taken
    (after pauses, workers sleep and wake late); the barriers count the
    rest, and the layer by layer path (wide) shares its activation chunks
    among them. Whoever takes part, the output is the team's, and no pass
    hangs."""
    import time

    monkeypatch.setattr(_epoch, "PREDICT_TILE_WORK", 1 << 12)  # many tiles
    rng = np.random.RandomState(0)
    plan = make_plan(units, "relu", "softmax", "log_loss", 1024, True)
    params = glorot_init(units, "relu", rng, np.float64).astype(dtype)
    X = rng.randn(1000, units[0]).astype(dtype)
    work = np.empty(plan.work_size, dtype)

    def passes():
        outs = []
        for i in range(40):
            time.sleep(0.002 * (i % 3))  # 0-4 ms: past the workers' spin
            out = np.empty((len(X), units[-1]), dtype)
            _epoch.forward(plan, X, None, params, work, out, None, n_threads)
            outs.append(out)
        return outs

    outs = []
    _within(120, lambda: outs.extend(passes()))
    reference = np.empty_like(outs[0])
    _epoch.forward(plan, X, None, params, work, reference, None, n_threads)
    for out in outs:
        assert_array_equal(out, reference)


@pytest.mark.parametrize("kind", ["dense", "sparse", "batch_norm", "gelu"])
@pytest.mark.parametrize("n", [1, 300, 2500])
@pytest.mark.parametrize("units", [WIDE, NARROW], ids=["wide", "narrow"])
def test_forward_tiles_same_threads_same_bits(dtype, kind, n, units, monkeypatch):
    monkeypatch.setattr(_epoch, "PREDICT_TILE_WORK", 1 << 12)
    if kind == "sparse" and n == 1:
        pytest.skip("a sparse first layer is split by rows only")
    if units is NARROW and n == 1:
        pytest.skip("one row is one tile")
    rng = np.random.RandomState(0)
    act = "gelu" if kind == "gelu" else "tanh"
    plan = make_plan(units, act, "softmax", "log_loss", min(n, 1024),
                     kind != "sparse", batch_norm=kind == "batch_norm")
    params = glorot_init(units, act, rng, np.float64)
    running = None
    if kind == "batch_norm":
        params = np.r_[params, rng.uniform(0.5, 1.5, bn_sizes(units, True)[0])]
        running = np.concatenate(
            [np.r_[rng.uniform(-1, 1, m), rng.uniform(0.5, 2, m)]
             for m in units[1:-1]]).astype(dtype)
        assert running.size == plan.n_running
    params = params.astype(dtype)
    dense = rng.randn(n, units[0])
    X, csr = dense.astype(dtype), None
    if kind == "sparse":
        dense[rng.rand(*dense.shape) < 0.8] = 0
        m = sp.csr_matrix(dense.astype(dtype))
        csr = (m.data, m.indices.astype(np.intp), m.indptr.astype(np.intp))
        X = np.empty((0, units[0]), dtype)
    rows = min(n, 1024)
    panels = {}  # thread count: whether a layer has column panels
    for n_threads in (2, 3, 64):
        tiles = []
        panels[n_threads] = False
        for layer in range(len(units) - 1):
            chunk, panel = _epoch.predict_tiles(
                rows, units[layer], units[layer + 1], n_threads,
                layer > 0 or csr is None)
            tiles.append(-(-rows // chunk) * -(-units[layer + 1] // panel))
            panels[n_threads] |= panel < units[layer + 1]
        assert 1 < max(tiles) <= n_threads  # the case this test is for
    # Both paths: column panels (layer by layer) on the wide network, row
    # chunks only (_forward_rows but with batch norm) on the narrow one at
    # 2 threads.
    assert panels[64] if units is WIDE else not panels[2]

    def run(n_threads):
        out = np.full((n, units[-1]), np.nan, dtype)
        _within(60, lambda: _epoch.forward(
            plan, X, csr, params, np.empty(plan.work_size, dtype), out, running,
            n_threads))
        return out

    one = run(1)
    want = np.empty_like(one)
    _reference.forward(plan, X, csr, params, None, want, running)
    assert_allclose(one, want, rtol=RTOL[dtype], atol=1e-5)
    for n_threads in (2, 3, 64):
        # The same thread count, the same tiles: the same bits, whichever
        # thread takes which tile; other counts to rounding.
        out = run(n_threads)
        assert_array_equal(run(n_threads), out)
        assert_allclose(out, one, rtol=RTOL[dtype], atol=1e-6)


def test_predict_tiles_rule():
    rule = _epoch.PREDICT_RULE
    # Small products: one tile.
    assert _epoch.predict_tiles(1, 64, 100, 2) == (1, 100)
    assert _epoch.predict_tiles(1024, 64, 10, 2) == (1024, 10)
    # About one tile a thread; of the splits into the most tiles, the one
    # that packs least (chunks x m + panels x n values), ties to rows:
    # 1000 rows x 512 columns is 2 row chunks, 10 rows (under 16: no
    # chunks) x 256 columns 2 panels, 1000 x 1000 2 row chunks.
    assert _epoch.predict_tiles(1000, 784, 512, 2) == (500, 512)
    assert _epoch.predict_tiles(10, 2000, 256, 2) == (10, 128)
    assert _epoch.predict_tiles(1000, 300, 1000, 2) == (500, 1000)
    assert _epoch.predict_tiles(1000, 2000, 256, 4) == (250, 256)
    assert _epoch.predict_tiles(1000, 2000, 256, 2, True, 1 << 30) == (1000, 256)
    for rows, k, m, dense in [(1, 2000, 256, True), (10, 2000, 256, True),
                              (1000, 784, 512, True), (1000, 2000, 256, True),
                              (1024, 300, 1000, True), (777, 5000, 64, False)]:
        for n_threads in (2, 3, 8, 64):
            chunk, panel = _epoch.predict_tiles(rows, k, m, n_threads, dense)
            n_tiles = -(-rows // chunk) * -(-m // panel)
            assert 1 <= n_tiles <= min(n_threads, rule["max_tiles"])
            assert chunk >= min(rows, _epoch.STEP_RULE["min_share_rows"])
            assert panel == m or (panel >= 32 and panel % 8 == 0)
            assert dense or panel == m  # sparse products split by rows only
            # Each tile is worth at least tile_work multiply-adds, give or
            # take a panel's rounding to whole SIMD lanes.
            assert chunk * panel * k >= _epoch.PREDICT_TILE_WORK // 2 or n_tiles == 1


def test_loss_grad_threads_equal_twin(dtype):
    plan, params, X, csr, Y, sw = _problem(dtype, rows=300)
    got = []
    for n_threads in (1, 2):
        grad = np.empty_like(params)
        loss = _epoch.loss_grad(plan, X, csr, Y, sw, params, grad,
                                np.empty(plan.work_size, dtype), 1e-3, 1e-4, 0,
                                None, n_threads)
        got.append((loss, grad))
    want = np.empty_like(params)
    loss = _reference.loss_grad(plan, X, csr, Y, sw, params, want, None, 1e-3, 1e-4)
    for value, grad in got:
        assert_allclose(value, loss, rtol=RTOL[dtype])
        assert_allclose(grad, want, rtol=RTOL[dtype], atol=1e-6)


@pytest.mark.parametrize("function", ["forward", "loss_grad"])
def test_bad_thread_count_raises(function):
    plan, params, X, csr, Y, sw = _problem(np.float64, rows=300)
    work = np.empty(plan.work_size)
    with pytest.raises(ValueError, match="n_threads"):
        if function == "forward":
            _epoch.forward(plan, X, csr, params, work, np.empty((300, 3)), None, 0)
        else:
            _epoch.loss_grad(plan, X, csr, Y, sw, params, np.empty_like(params),
                             work, 0.0, 0.0, 0, None, 0)


def test_effective_n_threads():
    assert effective_n_threads(3) == 3
    assert effective_n_threads(-1) == min(_pool.max_threads(), cpu_count())
    assert effective_n_threads(-cpu_count() - 5) == 1
    assert effective_n_threads(None) == min(_pool.max_threads(), cpu_count())
    for api in ("openmp", None):  # as joblib workers do; all libraries
        with threadpool_limits(1, user_api=api):
            assert _pool.max_threads() == 1
            assert effective_n_threads(None) == 1
            assert effective_n_threads(-1) == 1
    assert effective_n_threads(None) == min(_pool.max_threads(), cpu_count())


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity")
                    or min(len(os.sched_getaffinity(0)), _pool.max_threads(),
                           cpu_count()) < 2,
                    reason="needs 2 CPUs (affinity and quota) and 2 threads allowed")
def test_effective_n_threads_follows_the_cpus_this_thread_may_use():
    # As a benchmark pins itself to one core for a while: n_jobs=None then
    # means that core, and all of them again once let go.
    cpus = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cpus)})
        assert effective_n_threads(None) == 1
    finally:
        os.sched_setaffinity(0, cpus)
    assert effective_n_threads(None) == min(_pool.max_threads(), cpu_count())
    assert effective_n_threads(None) > 1


def test_threadpoolctl_sees_the_pool():
    info = [lib for lib in threadpool_info() if lib["internal_api"] == "fastbp"]
    assert len(info) == 1 and info[0]["user_api"] == "openmp"
    assert info[0]["num_threads"] == _pool.max_threads()


def _blas_counts():
    return [lib["num_threads"] for lib in threadpool_info()
            if lib["user_api"] == "blas"]


def test_blas_one_thread_nests_and_restores():
    before = _blas_counts()
    with blas_one_thread():
        assert set(_blas_counts()) == {1}
        with blas_one_thread():
            assert set(_blas_counts()) == {1}
        assert set(_blas_counts()) == {1}
    assert _blas_counts() == before


def test_blas_one_thread_holds_blas_in_any_thread():
    """A fit run from a worker thread (a server, a threading backend) holds
    BLAS on one thread too, after another thread set a BLAS limit through
    threadpoolctl (3.8 then ignores OpenBLAS limits set from other threads)."""
    from threadpoolctl import ThreadpoolController
    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    before = [lib.get_num_threads() for lib in libs]
    for lib in libs:
        lib.set_num_threads(2)  # this thread now controls them, for threadpoolctl
    seen = []

    def worker():
        with blas_one_thread():
            seen.append(_blas_counts())
        seen.append(_blas_counts())

    try:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(60)
        assert seen[0] and set(seen[0]) == {1}
        assert set(seen[1]) == {2}  # restored
    finally:
        for lib, n in zip(libs, before):
            lib.set_num_threads(n)


def test_blas_hold_reaches_a_library_threadpoolctl_controls_only_in_python():
    """A BLAS whose controller has no C functions (the hold calls back into
    its methods): held at one thread once, nested, and restored at the end."""
    from fastbp import _pool, _threads

    class Controller:
        internal_api = "mkl"
        threads = 3

        def get_num_threads(self):
            return self.threads

        def set_num_threads(self, n):
            calls.append(n)
            self.threads = n

    calls, fake = [], Controller()
    real = _threads._libraries()
    _threads._hold_libraries(real + [_threads._getter_setter(fake)])
    try:
        with blas_one_thread():
            assert fake.threads == 1 and _pool.blas_hold_depth() == 1
            with blas_one_thread():
                assert _pool.blas_hold_depth() == 2
        assert calls == [1, 3] and _pool.blas_hold_depth() == 0
    finally:
        _threads._hold_libraries(real)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True])
def test_bad_n_jobs_raises(n_jobs):
    X, y = make_classification(50, 5, random_state=0)
    with pytest.raises(ValueError, match="n_jobs"):
        MLPClassifier(n_jobs=n_jobs).fit(X, y)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_n_jobs_same_count_same_model(solver, engine):
    X, y = make_classification(600, 20, random_state=0)
    fits = [MLPRegressor(hidden_layer_sizes=(64, 32), solver=solver, batch_size=200, max_iter=3,
                         random_state=0, n_jobs=n).fit(X, y.astype(float))
            for n in (2, 2, 1, -1)]
    for a, b in zip(fits[0].coefs_, fits[1].coefs_, strict=True):
        assert_array_equal(a, b)
    for fit in fits[2:]:
        assert_allclose(fit.predict(X), fits[0].predict(X), rtol=1e-6, atol=1e-8)
    assert_array_equal(fits[0].predict(X[:300]), fits[0].predict(X)[:300])


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_n_jobs_agree_with_early_stopping_and_weights(kind, engine):
    # Every threaded engine through the estimator: early stopping's
    # validation split, sample weights, L1 and dropout; two threads agree
    # with one to rounding, and again with themselves bit for bit.
    X, y = make_classification(600, 20, n_classes=3, n_informative=6, random_state=0)
    sw = np.random.RandomState(0).uniform(0.5, 2, len(y))
    est, target = (MLPClassifier, y) if kind == "classifier" else (MLPRegressor, y.astype(float))
    fits = [est(hidden_layer_sizes=(64, 32), batch_size=128, max_iter=4, l1=1e-4, dropout=0.2,
                early_stopping=True, random_state=0, n_jobs=n).fit(X, target, sample_weight=sw)
            for n in (2, 2, 1)]
    for a, b, c in zip(fits[0].coefs_, fits[1].coefs_, fits[2].coefs_, strict=True):
        assert_array_equal(a, b)
        assert_allclose(a, c, rtol=1e-9, atol=1e-12)
    assert_allclose(fits[0].loss_curve_, fits[2].loss_curve_, rtol=1e-10)


class _Stop(Exception):
    pass


def _interrupted_after_first_block(call, out):
    """Run call() while a thread sends SIGUSR1 to the main thread once out's
    first entry is written; return whether the handler's exception stopped
    it (out's last entry is then still unwritten: counted, not timed)."""
    import signal
    import threading

    if not hasattr(signal, "pthread_kill"):
        pytest.skip("needs pthread_kill")

    def handler(signum, frame):
        raise _Stop

    first = out.reshape(-1)[:1]

    def send():
        while np.isnan(first[0]):
            threading.Event().wait(0.001)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    old = signal.signal(signal.SIGUSR1, handler)
    sender = threading.Thread(target=send, daemon=True)
    try:
        sender.start()
        with pytest.raises(_Stop):
            call()
    finally:
        sender.join(10)
        signal.signal(signal.SIGUSR1, old)
    return bool(np.isnan(out.reshape(-1)[-1]))


# (10, 300, 300, 2) on 1024-row blocks: ~10 ms a block, seconds in all.
SIGNAL_UNITS = [10, 300, 300, 2]


def _signal_problem(n_blocks):
    plan = make_plan(SIGNAL_UNITS, "tanh", "softmax", "log_loss", 1024, False)
    params = glorot_init(SIGNAL_UNITS, "tanh", np.random.RandomState(0), np.float32)
    X = np.random.RandomState(1).randn(n_blocks * 1024, 10).astype(np.float32)
    return plan, params, X, np.empty(plan.work_size, np.float32)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_forward_stops_on_a_signal_between_blocks(n_threads):
    plan, params, X, work = _signal_problem(500)
    out = np.full((len(X), 2), np.nan, np.float32)
    assert _interrupted_after_first_block(
        lambda: _epoch.forward(plan, X, None, params, work, out, None, n_threads),
        out)


def test_jacobian_stops_on_a_signal_between_blocks():
    from fastbp import _curvature

    plan, params, X, work = _signal_problem(200)
    out = np.full((len(X), 2, 10), np.nan, np.float32)
    assert _interrupted_after_first_block(
        lambda: _curvature.jacobian(plan, X, None, params, work, out), out)
