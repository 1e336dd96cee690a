#include "parallel.h"

#include "base/log.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define PAR_SPIN 20000

struct bt_par {
    int              n_threads;
    pthread_t       *workers;
    pthread_mutex_t  lock;
    pthread_cond_t   wake;
    pthread_cond_t   done_cv;
    atomic_uint      gen;        /* bumped per run */
    atomic_int       next;       /* next task to claim */
    atomic_int       active;     /* workers still inside the run */
    int              n_tasks;
    bt_par_fn        fn;
    void            *ctx;
    atomic_bool      stop;
};

typedef struct {
    bt_par_t *par;
    int       id;
} par_arg_t;

static void par_work(bt_par_t *par, int thread)
{
    for (;;) {
        int t = atomic_fetch_add(&par->next, 1);

        if (t >= par->n_tasks) {
            return;
        }
        par->fn(par->ctx, t, thread);
    }
}

static void *par_main(void *arg)
{
    par_arg_t *a = arg;
    bt_par_t *par = a->par;
    const int id = a->id;
    unsigned seen = 0;

    free(a);
    for (;;) {
        unsigned g;
        int spin = 0;

        while ((g = atomic_load(&par->gen)) == seen &&
               !atomic_load(&par->stop) && spin < PAR_SPIN) {
            spin++;
        }
        if (g == seen && !atomic_load(&par->stop)) {
            pthread_mutex_lock(&par->lock);
            while ((g = atomic_load(&par->gen)) == seen &&
                   !atomic_load(&par->stop)) {
                pthread_cond_wait(&par->wake, &par->lock);
            }
            pthread_mutex_unlock(&par->lock);
        }
        if (atomic_load(&par->stop)) {
            return NULL;
        }
        seen = g;
        par_work(par, id);
        if (atomic_fetch_sub(&par->active, 1) == 1) {
            pthread_mutex_lock(&par->lock);
            pthread_cond_signal(&par->done_cv);
            pthread_mutex_unlock(&par->lock);
        }
    }
}

int bt_par_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : (int)n;
}

bt_par_t *bt_par_create(int n_threads)
{
    bt_par_t *par = calloc(1, sizeof(*par));

    if (par == NULL || n_threads < 1) {
        free(par);
        return NULL;
    }
    par->n_threads = n_threads;
    pthread_mutex_init(&par->lock, NULL);
    pthread_cond_init(&par->wake, NULL);
    pthread_cond_init(&par->done_cv, NULL);
    par->workers = calloc((size_t)n_threads, sizeof(pthread_t));
    if (par->workers == NULL) {
        goto err;
    }
    for (int i = 1; i < n_threads; i++) {
        par_arg_t *a = malloc(sizeof(*a));
        int rc;

        if (a == NULL) {
            par->n_threads = i;
            goto err;
        }
        a->par = par;
        a->id = i;
        rc = pthread_create(&par->workers[i], NULL, par_main, a);
        if (rc != 0) {
            bt_error("engine threads: pthread_create failed: %s", bt_strerror(rc));
            free(a);
            par->n_threads = i;
            goto err;
        }
    }
    return par;
err:
    bt_par_destroy(par);
    return NULL;
}

void bt_par_destroy(bt_par_t *par)
{
    if (par == NULL) {
        return;
    }
    pthread_mutex_lock(&par->lock);
    atomic_store(&par->stop, true);
    pthread_cond_broadcast(&par->wake);
    pthread_mutex_unlock(&par->lock);
    for (int i = 1; i < par->n_threads; i++) {
        pthread_join(par->workers[i], NULL);
    }
    free(par->workers);
    pthread_cond_destroy(&par->done_cv);
    pthread_cond_destroy(&par->wake);
    pthread_mutex_destroy(&par->lock);
    free(par);
}

int bt_par_threads(const bt_par_t *par)
{
    return par->n_threads;
}

void bt_par_run(bt_par_t *par, int n_tasks, bt_par_fn fn, void *ctx)
{
    if (n_tasks <= 0) {
        return;
    }
    if (par->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) {
            fn(ctx, t, 0);
        }
        return;
    }
    par->fn = fn;
    par->ctx = ctx;
    par->n_tasks = n_tasks;
    atomic_store(&par->next, 0);
    atomic_store(&par->active, par->n_threads - 1);
    pthread_mutex_lock(&par->lock);
    atomic_fetch_add(&par->gen, 1);
    pthread_cond_broadcast(&par->wake);
    pthread_mutex_unlock(&par->lock);
    par_work(par, 0);
    if (atomic_load(&par->active) > 0) {
        int spin = 0;

        while (atomic_load(&par->active) > 0 && spin < PAR_SPIN) {
            spin++;
        }
        pthread_mutex_lock(&par->lock);
        while (atomic_load(&par->active) > 0) {
            pthread_cond_wait(&par->done_cv, &par->lock);
        }
        pthread_mutex_unlock(&par->lock);
    }
}
