/* BLAS held on one thread (fastbp._threads.blas_one_thread), compiled into
 * fastbp._pool. Each BLAS library is a pair of its own C functions, get and
 * set its thread count (or ctypes callbacks for a library threadpoolctl
 * reaches only in Python). The first holder saves every count and sets
 * those above one to one; the last to leave restores them; nested and
 * concurrent holders share that one save. Why C: the same steps through
 * ctypes cost 2-3 us, a tenth of a 100-row predict.
 *
 * Callers release the GIL first: a ctypes callback takes it, and a holder
 * waiting here with it would never let that callback finish.
 */
#ifndef FASTBP_HOLD_H
#define FASTBP_HOLD_H

#include "_pool.h"

#define FASTBP_HOLD_MAX 16

#if defined(_MSC_VER)
#  define FASTBP_TLS __declspec(thread)
#else
#  define FASTBP_TLS __thread
#endif

typedef int (*fastbp_get_fn)(void);
typedef void (*fastbp_set_fn)(int);

static struct {
    fastbp_mutex lock;
    int n;                            /* libraries */
    fastbp_get_fn get[FASTBP_HOLD_MAX];
    fastbp_set_fn set[FASTBP_HOLD_MAX];
    int saved[FASTBP_HOLD_MAX];       /* counts before the first holder */
    int depth;                        /* holds in all threads */
} fastbp_hold_state;
static FASTBP_TLS int fastbp_hold_mine;  /* holds in this thread */

static void fastbp_hold_init(void) { fastbp_mutex_init(&fastbp_hold_state.lock); }

/* The libraries to hold, before the first hold (under the GIL, once). */
static int fastbp_hold_set_libraries(int n, void** get, void** set) {
    int i;
    if (n > FASTBP_HOLD_MAX)
        return -1;
    for (i = 0; i < n; i++) {
        fastbp_hold_state.get[i] = (fastbp_get_fn) get[i];
        fastbp_hold_state.set[i] = (fastbp_set_fn) set[i];
    }
    fastbp_hold_state.n = n;
    return 0;
}

static void fastbp_hold_restore(void) {
    int i;
    for (i = 0; i < fastbp_hold_state.n; i++)
        if (fastbp_hold_state.saved[i] != 1)  /* those saved at 1 stayed */
            fastbp_hold_state.set[i](fastbp_hold_state.saved[i]);
}

static void fastbp_hold(void) {
    int i;
    fastbp_mutex_lock(&fastbp_hold_state.lock);
    if (fastbp_hold_state.depth++ == 0)
        for (i = 0; i < fastbp_hold_state.n; i++)
            if ((fastbp_hold_state.saved[i] = fastbp_hold_state.get[i]()) != 1)
                fastbp_hold_state.set[i](1);
    fastbp_hold_mine++;
    fastbp_mutex_unlock(&fastbp_hold_state.lock);
}

static void fastbp_release(void) {
    fastbp_mutex_lock(&fastbp_hold_state.lock);
    fastbp_hold_mine--;
    if (--fastbp_hold_state.depth == 0)
        fastbp_hold_restore();
    fastbp_mutex_unlock(&fastbp_hold_state.lock);
}

/* In a forked child (from Python's after-fork hook, not pthread_atfork:
   restoring may call into BLAS and into Python): only the forking thread
   is here. A new lock; the holds it has (what it saved is restored when it
   leaves); counts held for threads that are gone are restored now. */
static void fastbp_hold_after_fork(void) {
    fastbp_mutex_init(&fastbp_hold_state.lock);
    if (fastbp_hold_state.depth > 0 && fastbp_hold_mine == 0)
        fastbp_hold_restore();
    fastbp_hold_state.depth = fastbp_hold_mine;
}

static int fastbp_hold_depth(void) { return fastbp_hold_state.depth; }

#endif
