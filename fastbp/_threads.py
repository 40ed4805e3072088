"""How many threads fastbp uses, and BLAS held to one thread cheaply.

fastbp runs its own threads (``_pool``) over the rows of a minibatch or of
a predict; each of them calls BLAS, which must then stay on one thread.
``effective_n_threads`` follows scikit-learn's
``_openmp_effective_n_threads``: the pool's limit (``OMP_NUM_THREADS`` when
set, as OpenMP reads it, and threadpoolctl's limits, since fastbp's pool is
registered with threadpoolctl as an OpenMP library: loky's joblib workers
set both, so a fit inside ``GridSearchCV(n_jobs=...)`` does not
oversubscribe), capped at the cores.

``blas_one_thread`` sets BLAS's thread count through each library's own
functions, found once through threadpoolctl (``threadpool_limits`` rescans
every loaded library on each call, about 1 ms) and called from C
(``_hold.h``); nested and concurrent uses share one save and restore. It
sets OpenBLAS's count from whichever thread fits: threadpoolctl 3.8
ignores, silently, a pthreads OpenBLAS limit set from any thread but the
first that set one, which left a fit run from a worker thread calling
threaded OpenBLAS from each of fastbp's threads (slower, and a fork during
it hangs the parent in OpenBLAS's at-fork shutdown).
"""

import ctypes
import os
import threading

import threadpoolctl
from joblib import cpu_count
from threadpoolctl import ThreadpoolController

import fastbp._pool as _pool

_lock = threading.Lock()
_state = {"libraries": None, "cores": None}


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
    # Only the forking thread is here: a new lock (another thread may have
    # held it), and the hold keeps this thread's holds (_hold.h).
    global _lock
    _lock = threading.Lock()
    _pool.blas_hold_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _libraries():
    """Each BLAS library's (get, set) of its thread count as C function
    addresses, for _pool's hold (found once, on the first hold)."""
    with _lock:
        if _state["libraries"] is None:
            _hold_libraries([_getter_setter(lib) for lib in ThreadpoolController()
                             .select(user_api="blas").lib_controllers])
    return _state["libraries"]


def _hold_libraries(pairs):
    """The hold's libraries from now on: (get, set) ctypes functions."""
    _pool.set_blas_libraries([tuple(ctypes.cast(f, ctypes.c_void_p).value for f in pair)
                              for pair in pairs])
    _state["libraries"] = pairs  # callbacks must stay alive while registered


_GET = ctypes.CFUNCTYPE(ctypes.c_int)
_SET = ctypes.CFUNCTYPE(None, ctypes.c_int)


def _getter_setter(lib):
    """The library's own get and set functions where threadpoolctl exposes
    them (OpenBLAS; threadpoolctl >= 3.8 wraps its setter in a
    controlling-thread rule, while the hold coordinates its users itself);
    else C callbacks to the controller's methods (slower: each call enters
    Python)."""
    symbol = getattr(lib, "_get_symbol", None)
    layer = getattr(lib, "threading_layer", None)
    if lib.internal_api == "openblas" and symbol is not None:
        get, set_ = (symbol("omp_get_max_threads"), symbol("omp_set_num_threads")) \
            if layer == "openmp" else (symbol("openblas_get_num_threads"),
                                      symbol("openblas_set_num_threads"))
        if get is not None and set_ is not None:
            return get, set_
    set_threads = getattr(lib, "_real_set_num_threads", lib.set_num_threads)

    def get():
        n = lib.get_num_threads()
        return n if isinstance(n, int) and n > 0 else 1  # unknown: left alone

    return _GET(get), _SET(set_threads)


class _OneThread:
    """The context blas_one_thread gives (a class: a generator-based context
    manager costs a small predict about a microsecond more)."""

    def __enter__(self):
        if _state["libraries"] is None:
            _libraries()
        _pool.blas_hold()

    def __exit__(self, *exc):
        _pool.blas_release()


_ONE_THREAD = _OneThread()


def blas_one_thread():
    """BLAS on one thread for the duration of a with block (restored when
    the last user of the process leaves; nested and concurrent uses share
    one save and restore)."""
    return _ONE_THREAD
