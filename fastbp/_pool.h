/* fastbp's thread pool: the threads a training step, a full-batch pass or
 * a predict shares its work among.
 *
 * Why not OpenMP: GNU OpenMP's pool does not survive fork (a child that
 * starts a parallel region waits forever for threads that exist only in
 * the parent), its threads spin for a time the library cannot set, and a
 * step needs barriers between layers that cython.parallel does not offer.
 *
 * fastbp_pool_run(task, ctx, T) runs task(ctx, t) for t = 0 .. T - 1, t = 0
 * on the caller, and returns when all have returned. Inside a task,
 * fastbp_barrier_wait(b) waits until all T have reached it. Callers from
 * several threads take turns (a mutex); a task never starts another job.
 * Workers are started on first need and live as long as the process; a
 * thread with nothing to do spins for FASTBP_SPIN_US microseconds (default
 * 300), yielding its CPU after the first 20, then sleeps. Why 300: a worker
 * woken after a pause lands on its waker's CPU; with a 50 us spin the two
 * then took turns on one CPU for the whole fit (the waits outlast the
 * spin, so both keep sleeping and the scheduler sees nothing to spread):
 * digits on 2 threads 2.5 ms an epoch, CPU/wall 1.0, against 0.9 ms. A
 * spinning thread stays runnable and an idle CPU takes it. That alone did
 * not hold for bursts of predicts after a pause, so a worker that starts
 * a job on its caller's CPU also moves off it (fastbp_leave_cpu).
 *
 * A job whose work is taken item by item may end without the workers that
 * have not started it: the caller, once every item is taken, withdraws them
 * (fastbp_pool_withdraw; each worker's claim word is swapped from its value
 * before the job by the worker, taking part, or by the caller, withdrawing
 * it: one of the two wins) and shrinks the job's barriers by as many. Why:
 * a worker asleep after a pause wakes 100-300 us later on these VMs, and
 * the caller waited for it at the end of a pass it had done alone. A
 * one-block predict, 1000 rows 5 ms apart on 2 threads: 580-640 -> 480-490
 * us, one thread's time.
 *
 * Fork: the child's copy of the pool names threads that exist only in the
 * parent, and its mutexes may be held by them. An at-fork handler in the
 * child forgets the pool (its memory is left as it is: nothing in the
 * child may touch it) and the next job starts fresh workers. Nothing
 * happens before fork or in the parent, so no lock is taken around fork
 * and a job running in another thread of the parent goes on untouched.
 */
#ifndef FASTBP_POOL_H
#define FASTBP_POOL_H

#include <stdlib.h>
#include <string.h>

#define FASTBP_POOL_MAX 64

#if defined(_WIN32)
#  define WIN32_LEAN_AND_MEAN
#  include <windows.h>
#  include <process.h>
#  define FASTBP_EXPORT __declspec(dllexport)
typedef SRWLOCK fastbp_mutex;
typedef CONDITION_VARIABLE fastbp_cond;
typedef HANDLE fastbp_thread;
#  define fastbp_mutex_init(m) InitializeSRWLock(m)
#  define fastbp_mutex_lock(m) AcquireSRWLockExclusive(m)
#  define fastbp_mutex_unlock(m) ReleaseSRWLockExclusive(m)
#  define fastbp_cond_init(c) InitializeConditionVariable(c)
#  define fastbp_cond_wait(c, m) SleepConditionVariableSRW(c, m, INFINITE, 0)
#  define fastbp_cond_broadcast(c) WakeAllConditionVariable(c)
#else
#  ifndef _GNU_SOURCE
#    define _GNU_SOURCE  /* sched_getaffinity */
#  endif
#  include <pthread.h>
#  include <sched.h>
#  include <signal.h>
#  include <time.h>
#  include <unistd.h>
#  define FASTBP_EXPORT __attribute__((visibility("default")))
typedef pthread_mutex_t fastbp_mutex;
typedef pthread_cond_t fastbp_cond;
typedef pthread_t fastbp_thread;
#  define fastbp_mutex_init(m) pthread_mutex_init(m, NULL)
#  define fastbp_mutex_lock(m) pthread_mutex_lock(m)
#  define fastbp_mutex_unlock(m) pthread_mutex_unlock(m)
#  define fastbp_cond_init(c) pthread_cond_init(c, NULL)
#  define fastbp_cond_wait(c, m) pthread_cond_wait(c, m)
#  define fastbp_cond_broadcast(c) pthread_cond_broadcast(c)
#endif

/* Sequentially consistent loads, stores and adds on ints shared between
   threads (C11 atomics are optional in MSVC's C). */
#if defined(_MSC_VER)
#  include <intrin.h>
#  define fastbp_load(p) _InterlockedOr((volatile long*) (p), 0)
#  define fastbp_store(p, v) _InterlockedExchange((volatile long*) (p), (long) (v))
#  define fastbp_add(p, v) _InterlockedExchangeAdd((volatile long*) (p), (long) (v))
#  define fastbp_cas(p, old, v) \
       (_InterlockedCompareExchange((volatile long*) (p), (long) (v), (long) (old)) == (long) (old))
#  define fastbp_relax() YieldProcessor()
#else
#  define fastbp_load(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#  define fastbp_store(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#  define fastbp_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
static inline int fastbp_cas_long(volatile long* p, long old, long v) {
    return __atomic_compare_exchange_n(p, &old, v, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}
#  define fastbp_cas(p, old, v) fastbp_cas_long((p), (old), (v))
#  if defined(__x86_64__) || defined(__i386__)
#    define fastbp_relax() __builtin_ia32_pause()
#  elif defined(__aarch64__)
#    define fastbp_relax() __asm__ __volatile__("yield")
#  else
#    define fastbp_relax() ((void) 0)
#  endif
#endif

#if defined(_WIN32)
#  define fastbp_yield() SwitchToThread()
#else
#  define fastbp_yield() sched_yield()
#endif

typedef void (*fastbp_task)(void* ctx, int t);

/* Each word threads wait on sits on its own cache line. */
typedef struct { volatile long v; char pad[64 - sizeof(long)]; } fastbp_word;

typedef struct {
    fastbp_word count;   /* arrivals in this phase */
    fastbp_word phase;   /* bumped when the last one arrives */
    int n;               /* threads that meet here (fewer once workers
                            are withdrawn: read and written atomically) */
} fastbp_barrier;

/* Take the next of a job's work items (dynamic scheduling). */
static inline long fastbp_next(fastbp_word* w) { return fastbp_add(&w->v, 1); }

static inline void fastbp_barrier_init(fastbp_barrier* b, int n) {
    memset(b, 0, sizeof *b);
    b->n = n;
}

#endif
