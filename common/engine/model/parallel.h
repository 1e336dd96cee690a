/* A fork-join thread group for kernels: bt_par_run hands out task indices
 * to the calling thread and n_threads - 1 workers, and returns when all
 * are done. Which thread runs a task never affects its result: kernels
 * split work by output rows/columns only. Workers spin briefly, then
 * sleep, between runs. One caller at a time. */
#ifndef BT_ENGINE_PARALLEL_H
#define BT_ENGINE_PARALLEL_H

typedef struct bt_par bt_par_t;

/* task in [0, n_tasks), thread in [0, n_threads) */
typedef void (*bt_par_fn)(void *ctx, int task, int thread);

/* n_threads >= 1; NULL on failure (logged). */
bt_par_t *bt_par_create(int n_threads);
void bt_par_destroy(bt_par_t *par);
int bt_par_threads(const bt_par_t *par);
void bt_par_run(bt_par_t *par, int n_tasks, bt_par_fn fn, void *ctx);

/* Online CPUs (at least 1). */
int bt_par_cpus(void);

#endif
