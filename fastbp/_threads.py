"""How many threads fastbp uses, and BLAS held to one thread cheaply.

fastbp runs its own threads over the rows of a minibatch or of a predict
(OpenMP in ``_epoch``); each of them calls BLAS, which must then stay on
one thread. ``effective_n_threads`` follows scikit-learn's
``_openmp_effective_n_threads``: ``OMP_NUM_THREADS`` and threadpoolctl's
OpenMP limits are honoured (loky's joblib workers set them, so a fit inside
``GridSearchCV(n_jobs=...)`` does not oversubscribe), capped at the cores.

``blas_one_thread`` sets BLAS's thread count through threadpoolctl
controllers found once (``threadpool_limits`` rescans every loaded library on
each call, about 1 ms); nested and concurrent uses share one save and
restore. It sets OpenBLAS's count from whichever thread fits: threadpoolctl
3.8 ignores, silently, a pthreads OpenBLAS limit set from any thread but the
first that set one, which left a fit run from a worker thread calling
threaded OpenBLAS from each of fastbp's threads (slower, and a fork during
it hangs the parent in OpenBLAS's at-fork shutdown).
"""

import threading
from contextlib import contextmanager

from joblib import cpu_count
from threadpoolctl import ThreadpoolController

from fastbp import _epoch

_lock = threading.Lock()
_state = {"controllers": None, "depth": 0, "saved": (), "cores": None}


def _cores():
    # joblib's count (affinity, cgroup quotas) takes ~0.2 ms: read it once.
    if _state["cores"] is None:
        _state["cores"] = cpu_count()
    return _state["cores"]


def effective_n_threads(n_jobs):
    """Threads for n_jobs, as scikit-learn's OpenMP estimators count them
    (HistGradientBoosting's ``_openmp_effective_n_threads``): None, what
    OpenMP allows (OMP_NUM_THREADS, threadpoolctl limits, a joblib worker's
    share), at most the cores; an int n > 0, n; n < 0, that + 1 + n, at least
    1. A build without OpenMP runs one thread whatever is asked."""
    if not _epoch.OPENMP:
        return 1
    allowed = min(_epoch.max_threads(), _cores())
    if n_jobs is None:
        return allowed
    if n_jobs < 0:
        return max(1, allowed + 1 + n_jobs)
    return int(n_jobs)


def _controllers():
    if _state["controllers"] is None:
        _state["controllers"] = tuple(
            ThreadpoolController().select(user_api="blas").lib_controllers
        )
    return _state["controllers"]


def _set_threads(lib, n):
    # The library's own setter (threadpoolctl >= 3.8 wraps OpenBLAS's in its
    # controlling-thread rule; blas_one_thread coordinates its users itself).
    getattr(lib, "_real_set_num_threads", lib.set_num_threads)(n)


@contextmanager
def blas_one_thread():
    """BLAS on one thread for the duration (restored when the last user of
    the process leaves)."""
    with _lock:
        if _state["depth"] == 0:
            libs = _controllers()
            _state["saved"] = tuple(lib.get_num_threads() for lib in libs)
            for lib in libs:
                _set_threads(lib, 1)
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                for lib, n in zip(_controllers(), _state["saved"], strict=True):
                    _set_threads(lib, n)
