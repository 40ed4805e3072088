"""How many threads fastbp uses, and BLAS held to one thread cheaply.

fastbp runs its own threads (``_pool``) over the rows of a minibatch or of
a predict; each of them calls BLAS, which must then stay on one thread.
``effective_n_threads`` follows scikit-learn's
``_openmp_effective_n_threads``: the pool's limit (``OMP_NUM_THREADS`` when
set, as OpenMP reads it, and threadpoolctl's limits, since fastbp's pool is
registered with threadpoolctl as an OpenMP library: loky's joblib workers
set both, so a fit inside ``GridSearchCV(n_jobs=...)`` does not
oversubscribe), capped at the cores.

``blas_one_thread`` sets BLAS's thread count through threadpoolctl
controllers found once (``threadpool_limits`` rescans every loaded library on
each call, about 1 ms); nested and concurrent uses share one save and
restore. It sets OpenBLAS's count from whichever thread fits: threadpoolctl
3.8 ignores, silently, a pthreads OpenBLAS limit set from any thread but the
first that set one, which left a fit run from a worker thread calling
threaded OpenBLAS from each of fastbp's threads (slower, and a fork during
it hangs the parent in OpenBLAS's at-fork shutdown).
"""

import os
import threading

import threadpoolctl
from joblib import cpu_count
from threadpoolctl import ThreadpoolController

import fastbp._pool as _pool

_lock = threading.Lock()
_state = {"controllers": None, "depth": 0, "saved": (), "cores": None}
_held = threading.local()  # each thread's depth of blas_one_thread


class _PoolController(threadpoolctl.LibController):
    """fastbp's pool as threadpoolctl sees it: an OpenMP-like library, so
    ``threadpool_limits(n)`` and ``threadpool_limits(n, user_api="openmp")``
    limit fastbp as they limit scikit-learn's OpenMP estimators."""

    user_api = "openmp"
    internal_api = "fastbp"
    filename_prefixes = ("_pool.",)
    check_symbols = ("fastbp_get_max_threads", "fastbp_set_num_threads")

    def get_num_threads(self):
        return self.dynlib.fastbp_get_max_threads()

    def set_num_threads(self, num_threads):
        return self.dynlib.fastbp_set_num_threads(num_threads)

    def get_version(self):
        from fastbp._version import __version__
        return __version__


threadpoolctl.register(_PoolController)


def _cores():
    # joblib's count (affinity, cgroup quotas) takes ~0.2 ms: read once for
    # each CPU set this thread may run on (~1 us to read), so a process
    # pinned for a while, then let go, gets its cores back.
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    known = _state["cores"]
    if known is None or known[0] != cpus:
        known = _state["cores"] = cpus, cpu_count()
    return known[1]


def effective_n_threads(n_jobs):
    """Threads for n_jobs, as scikit-learn's OpenMP estimators count them
    (HistGradientBoosting's ``_openmp_effective_n_threads``): None, what
    the pool allows (OMP_NUM_THREADS, threadpoolctl limits, a joblib
    worker's share), at most the cores; an int n > 0, n; n < 0, that + 1 +
    n, at least 1. At most the threads the system lets the pool start."""
    allowed = min(_pool.max_threads(), _cores())
    if n_jobs is None:
        n = allowed
    elif n_jobs < 0:
        n = max(1, allowed + 1 + n_jobs)
    else:
        n = min(int(n_jobs), _pool.MAX_THREADS)
    return n if n == 1 else _pool.reserve(n)


def _after_fork_in_child():
    # Other threads of the parent may have held the lock or been inside
    # blas_one_thread; only the forking thread is here: a new lock, and the
    # depth this thread holds (what it saved is restored when it leaves).
    global _lock
    _lock = threading.Lock()
    mine = getattr(_held, "depth", 0)
    if _state["depth"] > 0 and mine == 0:
        # BLAS was held on one thread for a thread that is not here.
        _restore_saved()
    _state["depth"] = mine


os.register_at_fork(after_in_child=_after_fork_in_child)


def _restore_saved():
    """Each BLAS library back to the count saved when the hold began (those
    saved at 1 are still there)."""
    for (_, set_threads), n in zip(_controllers(), _state["saved"], strict=True):
        if n != 1:
            set_threads(n)


def _controllers():
    """(get, set) of each BLAS library's thread count, found once."""
    if _state["controllers"] is None:
        _state["controllers"] = tuple(
            _getter_setter(lib) for lib in
            ThreadpoolController().select(user_api="blas").lib_controllers)
    return _state["controllers"]


def _getter_setter(lib):
    """The library's own get and set functions where threadpoolctl exposes
    them (OpenBLAS: its ctypes functions, 0.2 us a call against 1-2 us
    through the controller's methods, which look the symbol up each time;
    threadpoolctl >= 3.8 also wraps OpenBLAS's setter in its
    controlling-thread rule, while blas_one_thread coordinates its users
    itself); the controller's methods otherwise."""
    symbol = getattr(lib, "_get_symbol", None)
    layer = getattr(lib, "threading_layer", None)
    if lib.internal_api == "openblas" and symbol is not None:
        get, set_ = (symbol("omp_get_max_threads"), symbol("omp_set_num_threads")) \
            if layer == "openmp" else (symbol("openblas_get_num_threads"),
                                      symbol("openblas_set_num_threads"))
        if get is not None and set_ is not None:
            return get, set_
    return lib.get_num_threads, getattr(lib, "_real_set_num_threads",
                                        lib.set_num_threads)


class _OneThread:
    """The context blas_one_thread gives (a class: a generator-based context
    manager costs a small predict about a microsecond more)."""

    def __enter__(self):
        with _lock:
            if _state["depth"] == 0:
                libs = _controllers()
                _state["saved"] = saved = [get() for get, _ in libs]
                for (_, set_threads), n in zip(libs, saved):
                    if n != 1:
                        set_threads(1)
            _state["depth"] += 1
            _held.depth = getattr(_held, "depth", 0) + 1

    def __exit__(self, *exc):
        with _lock:
            _held.depth -= 1
            _state["depth"] -= 1
            if _state["depth"] == 0:
                _restore_saved()


_ONE_THREAD = _OneThread()


def blas_one_thread():
    """BLAS on one thread for the duration of a with block (restored when
    the last user of the process leaves; nested and concurrent uses share
    one save and restore)."""
    return _ONE_THREAD
