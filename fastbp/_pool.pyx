"""fastbp's threads: the pool every threaded pass runs on (``_pool.h``).

``run(task, ctx, T)`` (cimported by the compiled modules) runs task(ctx, t)
for t < T, t = 0 on the caller; ``barrier_wait`` meets the other threads
of the job; ``withdraw_unstarted`` (thread 0, in a job whose items are
taken one at a time) lets it end without the workers that have not started
it, b then counting the others, and ``team_rank`` (after a barrier since)
numbers those left. A forked child starts its own workers on
its first job. BLAS held on one thread: ``_hold.h``.
"""

cdef extern from "_pool_impl.h":
    ctypedef void (*fastbp_task)(void* ctx, int t) noexcept nogil
    ctypedef struct fastbp_barrier:
        pass
    int fastbp_pool_setup() noexcept nogil
    int fastbp_pool_run(fastbp_task task, void* ctx, int n) noexcept nogil
    int fastbp_pool_reserve(int want) noexcept nogil
    void fastbp_barrier_wait(fastbp_barrier* b) noexcept nogil
    void fastbp_barrier_shrink(fastbp_barrier* b, int k) noexcept nogil
    int fastbp_pool_withdraw() noexcept nogil
    int fastbp_pool_rank(int t, int* n) noexcept nogil
    int fastbp_get_max_threads() noexcept nogil
    long fastbp_pool_jobs() noexcept nogil
    void fastbp_set_num_threads(int n) noexcept nogil
    int FASTBP_POOL_MAX

cdef extern from "_hold.h":
    void fastbp_hold_init() noexcept nogil
    int fastbp_hold_set_libraries(int n, void** get, void** set) noexcept nogil
    void fastbp_hold() noexcept nogil
    void fastbp_release() noexcept nogil
    void fastbp_hold_after_fork() noexcept nogil
    int fastbp_hold_depth() noexcept nogil
    enum: FASTBP_HOLD_MAX

fastbp_hold_init()
if fastbp_pool_setup() != 0:
    raise ImportError("fastbp could not register its at-fork handler")

# The most threads one job may use.
MAX_THREADS = FASTBP_POOL_MAX


cdef int run(task_fn task, void* ctx, int n_threads) noexcept nogil:
    return fastbp_pool_run(<fastbp_task> task, ctx, n_threads)


cdef void barrier_wait(Barrier* b) noexcept nogil:
    fastbp_barrier_wait(<fastbp_barrier*> b)


cdef void withdraw_unstarted(Barrier* b) noexcept nogil:
    fastbp_barrier_shrink(<fastbp_barrier*> b, fastbp_pool_withdraw())


cdef int team_rank(int t, int* n) noexcept nogil:
    return fastbp_pool_rank(t, n)


def reserve(int n_threads):
    """Start the workers a job of n_threads needs; the threads it can have
    (fewer only when the system refuses to start more)."""
    with nogil:
        n = fastbp_pool_reserve(n_threads)
    return n


def max_threads():
    """The threads fastbp may use: OMP_NUM_THREADS (read at import) or the
    CPUs this process may run on, or what threadpoolctl set since."""
    return fastbp_get_max_threads()


def set_max_threads(int n):
    fastbp_set_num_threads(n)


def jobs():
    """Jobs the pool ran on more than one thread in this process."""
    return fastbp_pool_jobs()


def set_blas_libraries(list pairs):
    """The (get, set) function addresses of each BLAS library that
    blas_hold holds; set once, before the first hold."""
    cdef void* get[FASTBP_HOLD_MAX]
    cdef void* set_[FASTBP_HOLD_MAX]
    if len(pairs) > FASTBP_HOLD_MAX:
        raise ValueError(f"more than {FASTBP_HOLD_MAX} BLAS libraries")
    for i, (g, s) in enumerate(pairs):
        get[i], set_[i] = <void*> <size_t> g, <void*> <size_t> s
    fastbp_hold_set_libraries(len(pairs), get, set_)


def blas_hold():
    """BLAS on one thread until the matching blas_release (_hold.h)."""
    with nogil:
        fastbp_hold()


def blas_release():
    with nogil:
        fastbp_release()


def blas_hold_after_fork():
    fastbp_hold_after_fork()


def blas_hold_depth():
    """Holds in all threads (0: BLAS has its own thread counts)."""
    return fastbp_hold_depth()
