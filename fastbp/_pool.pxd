# fastbp's thread pool (_pool.h): one a process, in this module; the other
# compiled modules run their jobs through these functions.
cdef extern from "_pool.h":
    ctypedef void (*task_fn "fastbp_task")(void* ctx, int t) noexcept nogil
    ctypedef struct Word "fastbp_word":
        long v
    ctypedef struct Barrier "fastbp_barrier":
        pass
    long next_item "fastbp_next"(Word* w) noexcept nogil
    void barrier_init "fastbp_barrier_init"(Barrier* b, int n) noexcept nogil


cdef int run(task_fn task, void* ctx, int n_threads) noexcept nogil
cdef void barrier_wait(Barrier* b) noexcept nogil
cdef void withdraw_unstarted(Barrier* b) noexcept nogil
cdef int team_rank(int t, int* n) noexcept nogil
