/* fastbp's thread pool itself, compiled into fastbp._pool only (one pool
 * a process): the other modules reach it through that module's cdef
 * functions (_pool.pxd). The types, the atomics and the design are in
 * _pool.h. */
#ifndef FASTBP_POOL_IMPL_H
#define FASTBP_POOL_IMPL_H

#include "_pool.h"

typedef struct fastbp_pool {
    fastbp_word go[FASTBP_POOL_MAX];  /* worker i's job number */
    fastbp_word claim[FASTBP_POOL_MAX];  /* job i took part in, or -job
                                            it was withdrawn from */
    fastbp_word remaining;            /* workers still in the job */
    fastbp_word done;                 /* the last job all workers left */
    fastbp_word sleepers;             /* threads waiting on cond */
    fastbp_mutex mutex;               /* guards cond's waits */
    fastbp_cond cond;
    fastbp_mutex turn;                /* one job at a time */
    fastbp_task task;                 /* the job: written before go[i] */
    void* ctx;
    int caller_cpu;                   /* the job's caller's CPU, or -1 */
    long job;
    int n_job;                        /* threads the job was posted to */
    int n_workers;                    /* workers 1 .. n_workers started */
    fastbp_thread threads[FASTBP_POOL_MAX];
} fastbp_pool;

typedef struct { fastbp_pool* pool; int id; } fastbp_worker_arg;

static fastbp_pool* fastbp_the_pool = NULL;
static fastbp_mutex fastbp_create_mutex;
static volatile long fastbp_limit = 1;     /* threads allowed */
static double fastbp_spin_seconds = 300e-6;  /* why: _pool.h */
#define FASTBP_YIELD_AFTER 20e-6

static double fastbp_now(void) {
#if defined(_WIN32)
    LARGE_INTEGER t, f;
    QueryPerformanceCounter(&t);
    QueryPerformanceFrequency(&f);
    return (double) t.QuadPart / (double) f.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
#endif
}

/* Wait until *w != old: spin a while, then sleep on the pool's condition.
   A waker stores the new value, then broadcasts if anyone sleeps; with both
   sides sequentially consistent, either the sleeper sees the new value or
   the waker sees the sleeper. */
static void fastbp_wait_change(fastbp_pool* p, volatile long* w, long old) {
    double now, start = 0, end = 0;
    int i;
    for (;;) {
        for (i = 0; i < 64; i++) {
            if (fastbp_load(w) != old)
                return;
            fastbp_relax();
        }
        now = fastbp_now();
        if (end == 0) {
            start = now;
            end = now + fastbp_spin_seconds;
        } else if (now > end) {
            break;
        } else if (now > start + FASTBP_YIELD_AFTER) {
            /* A long wait: the thread waited for may share this CPU (a
               worker woken onto its waker's CPU). Yield it the CPU; both
               stay runnable, so an idle CPU takes one of them. */
            fastbp_yield();
        }
    }
    fastbp_add(&p->sleepers.v, 1);
    fastbp_mutex_lock(&p->mutex);
    while (fastbp_load(w) == old)
        fastbp_cond_wait(&p->cond, &p->mutex);
    fastbp_mutex_unlock(&p->mutex);
    fastbp_add(&p->sleepers.v, -1);
}

static void fastbp_wake(fastbp_pool* p) {
    if (fastbp_load(&p->sleepers.v) > 0) {
        fastbp_mutex_lock(&p->mutex);
        fastbp_cond_broadcast(&p->cond);
        fastbp_mutex_unlock(&p->mutex);
    }
}

/* A worker on the CPU its job's caller runs on moves to another CPU it
   may use: its affinity without that CPU, then all of it again (why:
   _pool.h; digits' 1000-row predicts on 2 threads after a pause took 440
   us a call instead of 200). */
static void fastbp_leave_cpu(int cpu) {
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t mine, others;
    if (cpu < 0 || sched_getcpu() != cpu
            || sched_getaffinity(0, sizeof mine, &mine) != 0)
        return;
    others = mine;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) > 0 && sched_setaffinity(0, sizeof others, &others) == 0)
        sched_setaffinity(0, sizeof mine, &mine);
#else
    (void) cpu;
#endif
}

static int fastbp_current_cpu(void) {
#if defined(__linux__) && defined(CPU_COUNT)
    return sched_getcpu();
#else
    return -1;
#endif
}

/* A worker's claim on job: it and the job's caller (withdrawing it) both
   swap the word from what it held before the job; one of them wins. */
static int fastbp_take_part(volatile long* claim, long job) {
    long before = fastbp_load(claim);
    return before != -job && fastbp_cas(claim, before, job);
}

#if defined(_WIN32)
static unsigned __stdcall fastbp_worker(void* arg)
#else
static void* fastbp_worker(void* arg)
#endif
{
    fastbp_worker_arg a = *(fastbp_worker_arg*) arg;
    fastbp_pool* p = a.pool;
    long seen = 0;  /* go[id] of a new worker: no job for it before it starts */
    free(arg);
    for (;;) {
        fastbp_wait_change(p, &p->go[a.id].v, seen);
        seen = fastbp_load(&p->go[a.id].v);
        if (!fastbp_take_part(&p->claim[a.id].v, seen))
            continue;  /* withdrawn by the caller (fastbp_pool_withdraw) */
        fastbp_leave_cpu(p->caller_cpu);
        p->task(p->ctx, a.id);
        if (fastbp_add(&p->remaining.v, -1) == 1) {
            fastbp_store(&p->done.v, seen);
            fastbp_wake(p);
        }
    }
    return 0;
}

/* Start workers until n_workers >= want; returns how many there are. */
static int fastbp_start_workers(fastbp_pool* p, int want) {
    while (p->n_workers < want) {
        int id = p->n_workers + 1;
        fastbp_worker_arg* arg = (fastbp_worker_arg*) malloc(sizeof *arg);
        if (arg == NULL)
            break;
        arg->pool = p;
        arg->id = id;
#if defined(_WIN32)
        p->threads[id] = (HANDLE) _beginthreadex(NULL, 0, fastbp_worker, arg, 0, NULL);
        if (p->threads[id] == 0) { free(arg); break; }
#else
        {
            /* Workers take no signals: Python's handlers run in its threads. */
            sigset_t all, old;
            pthread_attr_t attr;
            int err;
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            err = pthread_create(&p->threads[id], &attr, fastbp_worker, arg);
            pthread_attr_destroy(&attr);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (err != 0) { free(arg); break; }
        }
#endif
        p->n_workers = id;
    }
    return p->n_workers;
}

static fastbp_pool* fastbp_get_pool(void) {
    fastbp_pool* p;
    fastbp_mutex_lock(&fastbp_create_mutex);
    p = fastbp_the_pool;
    if (p == NULL) {
        p = (fastbp_pool*) calloc(1, sizeof *p);
        if (p != NULL) {
            fastbp_mutex_init(&p->mutex);
            fastbp_cond_init(&p->cond);
            fastbp_mutex_init(&p->turn);
            fastbp_the_pool = p;
        }
    }
    fastbp_mutex_unlock(&fastbp_create_mutex);
    return p;
}

/* The threads a job of want threads can have (starting workers): want, or
   fewer when the system refuses threads. */
static int fastbp_pool_reserve(int want) {
    fastbp_pool* p;
    int have;
    if (want > FASTBP_POOL_MAX)
        want = FASTBP_POOL_MAX;
    if (want <= 1)
        return 1;
    p = fastbp_get_pool();
    if (p == NULL)
        return 1;
    fastbp_mutex_lock(&p->turn);
    have = 1 + fastbp_start_workers(p, want - 1);
    fastbp_mutex_unlock(&p->turn);
    return have < want ? have : want;
}

/* task(ctx, t) for t < T; 0, or -1 (nothing ran) when T threads are not
   to be had. */
static int fastbp_pool_run(fastbp_task task, void* ctx, int T) {
    fastbp_pool* p;
    long job;
    int i;
    if (T <= 1) {
        task(ctx, 0);
        return 0;
    }
    if (T > FASTBP_POOL_MAX || (p = fastbp_get_pool()) == NULL)
        return -1;
    fastbp_mutex_lock(&p->turn);
    if (fastbp_start_workers(p, T - 1) < T - 1) {
        fastbp_mutex_unlock(&p->turn);
        return -1;
    }
    job = ++p->job;
    p->n_job = T;
    p->task = task;
    p->ctx = ctx;
    p->caller_cpu = fastbp_current_cpu();
    fastbp_store(&p->remaining.v, T - 1);
    for (i = 1; i < T; i++)
        fastbp_store(&p->go[i].v, job);
    fastbp_wake(p);
    task(ctx, 0);
    fastbp_wait_change(p, &p->done.v, job - 1);
    fastbp_mutex_unlock(&p->turn);
    return 0;
}

/* From inside a job, on the caller's thread (t = 0): withdraw the workers
   that have not started the job yet, which then skip it; returns how many.
   For jobs whose work is taken item by item (no thread's share fixed in
   advance): the caller ends them alone rather than wait for a worker still
   waking up (100-300 us on these VMs) to take its part. The job's barriers
   must then count only the threads left in it. */
static int fastbp_pool_withdraw(void) {
    fastbp_pool* p = fastbp_the_pool;
    long job, before;
    int i, n = 0;
    if (p == NULL)
        return 0;
    job = p->job;
    for (i = 1; i < p->n_job; i++) {
        before = fastbp_load(&p->claim[i].v);
        if (before != job && before != -job
                && fastbp_cas(&p->claim[i].v, before, -job)) {
            n++;
            if (fastbp_add(&p->remaining.v, -1) == 1)
                fastbp_store(&p->done.v, job);
        }
    }
    return n;
}

/* After fastbp_pool_withdraw and a barrier of the job since (every
   worker's claim is then decided): thread t's place among the threads
   taking part (the caller first), and their number in *n. */
static int fastbp_pool_rank(int t, int* n) {
    fastbp_pool* p = fastbp_the_pool;
    long job = p->job;
    int i, before = 1, count = 1;
    for (i = 1; i < p->n_job; i++) {
        if (fastbp_load(&p->claim[i].v) == job) {
            count++;
            before += i < t;
        }
    }
    *n = count;
    return t == 0 ? 0 : before;
}

/* k threads fewer meet at b from now on (withdrawn from its job). */
static void fastbp_barrier_shrink(fastbp_barrier* b, int k) { fastbp_add(&b->n, -k); }

/* Jobs this process's pool ran on more than one thread (tests read it to
   know that threads took part, which results alone cannot show: a tiled
   product may give one thread's bits). */
static long fastbp_pool_jobs(void) {
    fastbp_pool* p;
    long n;
    if ((p = fastbp_get_pool()) == NULL)
        return 0;
    fastbp_mutex_lock(&p->turn);  /* after the job running now, if any */
    n = p->job;
    fastbp_mutex_unlock(&p->turn);
    return n;
}

/* Inside a job: wait until b->n threads have arrived. Everything a thread
   wrote before arriving is visible to all after. */
static void fastbp_barrier_wait(fastbp_barrier* b) {
    long phase;
    int n = fastbp_load(&b->n);  /* fewer when workers were withdrawn */
    if (n <= 1)
        return;
    phase = fastbp_load(&b->phase.v);
    if (fastbp_add(&b->count.v, 1) == fastbp_load(&b->n) - 1) {
        fastbp_store(&b->count.v, 0);
        fastbp_store(&b->phase.v, phase + 1);
        fastbp_wake(fastbp_the_pool);
    } else {
        fastbp_wait_change(fastbp_the_pool, &b->phase.v, phase);
    }
}

#if !defined(_WIN32)
static void fastbp_pool_after_fork_child(void) {
    /* The parent's pool is left as it is (its threads are not here). */
    fastbp_the_pool = NULL;
    fastbp_mutex_init(&fastbp_create_mutex);
}
#endif

/* The CPUs this process may run on (the default limit, as OpenMP's). */
static int fastbp_cpus(void) {
#if defined(_WIN32)
    SYSTEM_INFO info;
    GetSystemInfo(&info);
    return (int) info.dwNumberOfProcessors;
#elif defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    return (int) sysconf(_SC_NPROCESSORS_ONLN);
#else
    return (int) sysconf(_SC_NPROCESSORS_ONLN);
#endif
}

/* Once, as the extension loads: the limit (OMP_NUM_THREADS's first entry,
   as scikit-learn's OpenMP estimators read it, else the CPUs), the spin
   time, and the at-fork handler. */
static int fastbp_pool_setup(void) {
    const char* spin = getenv("FASTBP_SPIN_US");
    const char* omp = getenv("OMP_NUM_THREADS");
    long n = omp != NULL ? strtol(omp, NULL, 10) : 0;
    fastbp_mutex_init(&fastbp_create_mutex);
    if (n < 1)
        n = fastbp_cpus();
    fastbp_store(&fastbp_limit, n > 0 ? n : 1);
    if (spin != NULL && spin[0] != 0)
        fastbp_spin_seconds = atof(spin) * 1e-6;
#if !defined(_WIN32)
    return pthread_atfork(NULL, NULL, fastbp_pool_after_fork_child);
#else
    return 0;
#endif
}

/* threadpoolctl's view (a controller in fastbp._threads): the threads
   fastbp may use, as omp_get_max_threads / omp_set_num_threads are
   OpenMP's. */
FASTBP_EXPORT int fastbp_get_max_threads(void) { return (int) fastbp_load(&fastbp_limit); }
FASTBP_EXPORT void fastbp_set_num_threads(int n) { fastbp_store(&fastbp_limit, n > 0 ? n : 1); }

#endif
