"""Ctrl-C inside one long compiled call: a huge minibatch step, a full-batch
gradient, a Hessian-vector product.

Such calls run in row chunks (more than ``_epoch.STEP_CHUNK_WORK`` rows x
parameters; lowered here so small problems have many chunks) with a signal
check between chunks. No test depends on timing: a helper thread waits until
the compiled pass has written its workspace (it is under way, the GIL
released), then sends SIGINT to the main thread until the call ends; an
attempt the signal reached too late is retried. Each attempt asserts on the
state left, never on seconds.
"""

import signal
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import make_regression_data
from test_epoch import _buffers, make_problem

from fastbp import MLPRegressor, _curvature, _epoch
from fastbp._optimizers import SOLVERS
from fastbp._settings import Settings

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill")
    or threading.current_thread() is not threading.main_thread(),
    reason="needs POSIX signals and the main thread",
)

# Rows x parameters of a chunk here: hundreds of chunks per call.
CHUNK_WORK = 1 << 12
ATTEMPTS = 20


class _Interrupter:
    """SIGINT to the main thread, from a helper thread, until the handler
    raised KeyboardInterrupt once."""

    def __enter__(self):
        self.armed = False
        self.previous = signal.signal(signal.SIGINT, self._handler)
        # The suite's process may block SIGINT (a harness's choice): unblock
        # it on the main thread, the one the helper signals.
        self.mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return self

    def __exit__(self, *exc):
        self.armed = False
        for _ in range(1000):
            pass  # lets Python run the handler of signals still pending
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        signal.signal(signal.SIGINT, self.previous)

    def _handler(self, signum, frame):
        # Once: what runs after the interrupt (a fit finishing, cleanup)
        # must not be interrupted again by signals still pending.
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt

    def call(self, fn, started):
        """fn() while the helper, once started() is true, sends SIGINT until
        fn ends or the handler raised. Returns (result, the KeyboardInterrupt raised or None,
        whether fn returned)."""
        done = threading.Event()
        main = threading.main_thread().ident

        def send():
            while not done.is_set() and not started():
                time.sleep(0.0002)
            while not done.is_set() and self.armed:
                signal.pthread_kill(main, signal.SIGINT)
                time.sleep(0.0005)

        helper = threading.Thread(target=send)
        result, returned, interrupt = None, False, None
        self.armed = True
        helper.start()
        try:
            result = fn()
            returned = True
        except KeyboardInterrupt as e:
            interrupt = e
        finally:
            self.armed = False
            done.set()
            helper.join()
        return result, interrupt, returned


def _written(work, at):
    """True once the compiled pass wrote work[at] (work poisoned with NaN)."""
    work[at] = np.nan
    return lambda: not np.isnan(work[at])


@pytest.fixture
def chunked(monkeypatch):
    monkeypatch.setattr(_epoch, "STEP_CHUNK_WORK", CHUNK_WORK)


def _huge_step_problem(dtype=np.float32):
    # One minibatch of 16384 rows on (64, 64), 8 to 128 rows a chunk: a
    # step of ~7 ms on a fast core (2048 rows took 0.8 ms, at times over
    # before the helper's signal came in all 20 attempts, under load).
    return make_problem(dtype, hidden=(64, 64), head="identity-squared_error",
                        n_samples=16384, max_rows=16384, n_features=16)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_interrupted_huge_step_keeps_params_and_state_of_the_last_whole_step(
        chunked, n_threads):
    problem = _huge_step_problem()
    plan, n = problem.plan, problem.n_samples
    settings = Settings(SOLVERS["adam"], 0.01, 0.9, False, 0.9, 0.999, 1e-8,
                        alpha=1e-4, n_threads=n_threads)
    grad, work, state0 = _buffers(problem, "adam")

    def epoch(params, state):
        return _epoch.run_epoch(plan, settings, problem.X, problem.csr,
                                problem.Y, problem.sw, None, n, params, grad,
                                work, state, 0)

    # The uninterrupted step (the chunking does not depend on timing).
    whole = problem.params.copy(), state0.copy()
    assert epoch(*whole)[1] == 1
    abandoned = 0
    with _Interrupter() as interrupter:
        for _ in range(ATTEMPTS):
            params, state = problem.params.copy(), state0.copy()
            _, interrupt, returned = interrupter.call(
                lambda: epoch(params, state),
                _written(work, int(plan.act_off[-1])))
            if interrupt is not None and not returned \
                    and getattr(interrupt, "step", None) == 0:
                # Stopped inside the step: abandoned before its update.
                np.testing.assert_array_equal(params, problem.params)
                np.testing.assert_array_equal(state, state0)
                abandoned += 1
                if abandoned == 3:
                    break
            else:
                # The signal came after the last chunk: the step is whole.
                np.testing.assert_array_equal(params, whole[0])
                np.testing.assert_array_equal(state, whole[1])
    assert abandoned > 0, "no interrupt stopped a huge step between chunks"


def _fitted(n_samples=2048):
    X, y = make_regression_data(n_samples, 16, seed=0)
    est = MLPRegressor(hidden_layer_sizes=(64, 64), batch_size=n_samples,
                       max_iter=1, random_state=0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return est, X, y


def _watch(monkeypatch, module, name, work_arg, out_arg=None):
    """Wrap module.name so each call poisons its workspace and reports it;
    returns started() and the list of (interrupt, a copy of the out_arg
    buffer then) of each KeyboardInterrupt the call raised. (An interrupt
    raised as the compiled call returns looks alike: the buffer tells.)"""
    compiled = getattr(module, name)
    watched, raised = {}, []

    def wrapper(*args, **kwargs):
        plan, work = args[0], args[work_arg]
        watched["started"] = _written(work, int(plan.act_off[-1]))
        try:
            return compiled(*args, **kwargs)
        except KeyboardInterrupt as e:
            raised.append((e, None if out_arg is None
                           else np.array(args[out_arg])))
            raise
        finally:
            del watched["started"]

    def started():
        written = watched.get("started")
        return written is not None and written()

    monkeypatch.setattr(module, name, wrapper)
    return started, raised


def test_interrupted_fit_keeps_the_previous_model(chunked, monkeypatch):
    import pickle

    est, X, y = _fitted()
    saved = pickle.dumps(est)
    started, _ = _watch(monkeypatch, _epoch, "run_epoch", 10)
    kept = 0
    with _Interrupter() as interrupter:
        for _ in range(ATTEMPTS):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                _, interrupt, _ = interrupter.call(lambda: est.fit(X, y),
                                                   started)
            assert interrupt is None  # fit turns it into a warning
            interrupted = any("interrupted" in str(w.message) for w in caught)
            if interrupted and est._optimizer["step"] == 0:
                # A warm-started fit's optimizer starts afresh: no whole
                # step, so the weights are the previous model's.
                for a, b in zip(est.coefs_ + est.intercepts_,
                                pickle.loads(saved).coefs_
                                + pickle.loads(saved).intercepts_):
                    np.testing.assert_array_equal(a, b)
                kept += 1
                break
            est = pickle.loads(saved)
    assert kept > 0, "no interrupt stopped the fit's one huge step"


def test_interrupted_loss_gradient_and_hvp_leave_nothing_half_written(
        chunked, monkeypatch):
    est, X, y = _fitted()
    flat = est._fitted_model().flat.copy()
    loss, gradient = est.loss_gradient(X, y)
    v = np.random.RandomState(0).randn(flat.size)
    hv = est.hessian_vector_product(X, y, v)
    # The gradient or H v buffer the compiled call writes.
    lg = _watch(monkeypatch, _epoch, "loss_grad", 7, out_arg=6)
    hvp = _watch(monkeypatch, _curvature, "hessian_vector_product", 8,
                 out_arg=7)
    for call, (started, raised), want in (
            (lambda: est.loss_gradient(X, y), lg, gradient),
            (lambda: est.hessian_vector_product(X, y, v), hvp, hv)):
        inside = 0
        with _Interrupter() as interrupter:
            for _ in range(ATTEMPTS):
                result, interrupt, returned = interrupter.call(call, started)
                if returned:
                    got = result[1] if isinstance(result, tuple) else result
                    np.testing.assert_array_equal(got, want)
                elif raised and raised[-1][0] is interrupt \
                        and not np.array_equal(raised[-1][1], want):
                    # Stopped between chunks: the buffer holds partial sums,
                    # which the caller never saw (it raised).
                    inside += 1
                    break
        assert inside, "no interrupt stopped a long full-batch pass inside"
        np.testing.assert_array_equal(est._fitted_model().flat, flat)
        # Nothing stale is reused afterwards.
        np.testing.assert_array_equal(est.loss_gradient(X, y)[1], gradient)
        np.testing.assert_array_equal(est.hessian_vector_product(X, y, v), hv)
    assert est.loss_gradient(X, y)[0] == loss


def test_objective_is_not_ready_after_an_interrupted_pass(chunked, monkeypatch):
    """Objective reuses loss_grad's workspace for hvp only after a whole pass."""
    from fastbp._full_batch import Objective

    est, X, y = _fitted()
    problem, flat = est._objective(X, y, None)
    v = np.random.RandomState(1).randn(flat.size).astype(flat.dtype)
    # Unchunked: loss_grad's workspace prepares the hvp.
    monkeypatch.setattr(_epoch, "STEP_CHUNK_WORK", 1 << 40)
    problem.engine_loss_grad(flat)
    assert problem.ready
    want = problem.hvp(flat, v)

    def interrupted(*args, **kwargs):
        args[7][:] = np.nan  # the workspace, half written
        raise KeyboardInterrupt

    monkeypatch.setattr(_epoch, "loss_grad", interrupted)
    with pytest.raises(KeyboardInterrupt):
        problem.engine_loss_grad(flat)
    assert not problem.ready
    monkeypatch.undo()
    np.testing.assert_array_equal(problem.hvp(flat, v), want)
    assert isinstance(problem, Objective)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_passes_agree_with_whole_ones_and_the_twin(monkeypatch, dtype,
                                                            n_threads, sparse):
    """Chunks change the order of the gradient's sums only (as threads do):
    the same to rounding, the twin included, and deterministic."""
    from conftest import RTOL
    from test_epoch import ATOL, _epochs

    from fastbp import _reference

    problem = make_problem(dtype, hidden=(32, 16), n_samples=300,
                           max_rows=300, sparse=sparse)
    order = np.random.RandomState(1).permutation(300)
    P, W = problem.plan.n_params, problem.plan.work_size
    v = np.random.RandomState(2).randn(P).astype(dtype)
    tol = {"rtol": RTOL[dtype], "atol": ATOL[dtype]}

    def run(module):
        out = _epochs(module, problem, [order, order], 100, "adam",
                      n_threads=n_threads)
        grad, work, hv = np.empty(P, dtype), np.empty(W, dtype), np.empty(P, dtype)
        args = (problem.plan, problem.X, problem.csr, problem.Y, problem.sw,
                problem.params)
        loss = module.loss_grad(*args, grad, work, 0.01, n_threads=n_threads)
        curvature = _curvature if module is _epoch else _reference
        hv_loss = curvature.hessian_vector_product(
            *args, v, hv, work, np.empty(W, dtype), 0.01)
        return out["params"], out["state"], loss, grad, hv_loss, hv

    whole = run(_epoch)
    monkeypatch.setattr(_epoch, "STEP_CHUNK_WORK", 1 << 12)  # 8+ chunks
    chunked = run(_epoch)
    for a, b in zip(chunked, run(_epoch)):
        np.testing.assert_array_equal(a, b)  # no dependence on timing
    for a, b, c in zip(chunked, whole, run(_reference)):
        np.testing.assert_allclose(a, b, **tol)
        np.testing.assert_allclose(a, c, **tol)
    assert not np.array_equal(chunked[3], whole[3])  # the chunks did run
