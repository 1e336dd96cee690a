/* Helpers shared by the engine core tests: temporary model folders, a
 * plain KV region, prompt runs. Header-only, one test per executable. */
#ifndef ENG_TEST_UTIL_H
#define ENG_TEST_UTIL_H

#include "base/log.h"
#include "engine/model/forward.h"
#include "engine/model/synth.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static inline char *eng_tmpdir(void)
{
    char tmpl[] = "/tmp/bt-engine-test-XXXXXX";
    char *d = mkdtemp(tmpl);

    return d != NULL ? strdup(d) : NULL;
}

static inline void eng_rmdir(char *dir)
{
    DIR *d;
    struct dirent *e;
    char p[PATH_MAX];

    if (dir == NULL) {
        return;
    }
    d = opendir(dir);
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

/* A model of `spec` in a fresh temporary folder (eng_rmdir it); aborts
 * the test program when it cannot be written. */
static inline char *eng_make_model(const bt_synth_spec_t *spec)
{
    char *dir = eng_tmpdir();

    if (dir == NULL || bt_synth_write(spec, dir) != BT_OK) {
        fprintf(stderr, "cannot write a test model\n");
        abort();
    }
    return dir;
}

/* A test model: its folder, the loaded model and its vocabulary size. */
typedef struct {
    char       *dir;
    bt_model_t *m;
    int         V;
} eng_model_fx_t;

/* Writes and loads a model of `spec`; NULL when either fails. */
static inline eng_model_fx_t *eng_model_fx_new(const bt_synth_spec_t *spec)
{
    eng_model_fx_t *fx = calloc(1, sizeof(*fx));

    if (fx == NULL) {
        return NULL;
    }
    fx->dir = eng_make_model(spec);
    if (bt_model_load(fx->dir, &fx->m) != BT_OK) {
        eng_rmdir(fx->dir);
        free(fx);
        return NULL;
    }
    fx->V = fx->m->cfg.vocab;
    return fx;
}

static inline void eng_model_fx_free(eng_model_fx_t *fx)
{
    bt_model_destroy(fx->m);
    eng_rmdir(fx->dir);
    free(fx);
}

/* cmocka fixture hooks over an eng_model_fx_t in *state. */
static inline int eng_model_fx_setup(void **state, const bt_synth_spec_t *spec)
{
    *state = eng_model_fx_new(spec);
    return *state != NULL ? 0 : -1;
}

static inline int eng_model_fx_teardown(void **state)
{
    eng_model_fx_free(*state);
    return 0;
}

typedef struct {
    bt_kv_view_t view;
    uint32_t    *table;  /* identity: block i at i */
} eng_kv_t;

static inline int eng_kv_init(eng_kv_t *kv, const bt_model_t *m,
                              bt_dtype_t dt, int n_blocks, int block_size)
{
    const bt_model_config_t *c = &m->cfg;
    size_t n = (size_t)c->n_layers * (size_t)n_blocks * 2 *
               (size_t)block_size * (size_t)c->n_kv_heads *
               (size_t)c->head_dim;

    memset(kv, 0, sizeof(*kv));
    kv->view.dtype = dt;
    kv->view.n_layers = c->n_layers;
    kv->view.n_blocks = n_blocks;
    kv->view.block_size = block_size;
    kv->view.n_kv_heads = c->n_kv_heads;
    kv->view.head_dim = c->head_dim;
    kv->view.base = calloc(n, bt_dtype_size(dt));
    kv->table = malloc((size_t)n_blocks * sizeof(uint32_t));
    if (kv->view.base == NULL || kv->table == NULL) {
        return -1;
    }
    for (int i = 0; i < n_blocks; i++) {
        kv->table[i] = (uint32_t)i;
    }
    return 0;
}

static inline void eng_kv_cleanup(eng_kv_t *kv)
{
    free(kv->view.base);
    free(kv->table);
}

/* Greedy argmax, ties to the lower id. */
static inline int eng_argmax(const float *v, int n)
{
    int best = 0;

    for (int i = 1; i < n; i++) {
        if (v[i] > v[best]) {
            best = i;
        }
    }
    return best;
}

/* Runs `cmd` (argv, NULL-terminated) and returns its exit status. */
static inline int eng_spawn(char *const *argv)
{
    pid_t pid = fork();
    int st;

    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        FILE *devnull = freopen("/dev/null", "w", stdout);

        (void)devnull;
        execv(argv[0], argv);
        _exit(127);
    }
    if (waitpid(pid, &st, 0) != pid) {
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
