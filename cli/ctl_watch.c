/* What runs until something happens: --watch (list again every
 * --interval) and drain --wait (poll until the node holds no request).
 * Both end cleanly on SIGINT/SIGTERM; a reader that goes away (EPIPE,
 * `| head`) ends a watch quietly. */
#include "ctl.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t ctl_stop;

static void ctl_on_signal(int signo)
{
    (void)signo;
    ctl_stop = 1;
}

bool ctl_interrupted(void)
{
    return ctl_stop != 0;
}

void ctl_signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ctl_on_signal;
    sigemptyset(&sa.sa_mask);
    /* no SA_RESTART: a sleep ends at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* gRPC's threads may take the signal instead of this one: sleep in short
 * steps so the flag is seen within 100 ms either way. */
bool ctl_sleep(int64_t ms)
{
    while (ms > 0 && !ctl_stop) {
        int64_t step = ms < 100 ? ms : 100;
        struct timespec ts = { (time_t)(step / 1000), (long)(step % 1000) * 1000000L };

        nanosleep(&ts, NULL);
        ms -= step;
    }
    return !ctl_stop;
}

static int64_t ctl_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ctl_watch(ctl_t *ctl, int (*list)(ctl_t *ctl, int n_args, char **args),
              int n_args, char **args)
{
    int rc, round;

    if (!ctl->cfg.watch) {
        return list(ctl, n_args, args);
    }
    ctl_signals_install();
    for (round = 0;; round++) {
        int64_t start = ctl_mono_ms();

        if (round > 0) {
            /* rounds apart: a blank line between tables, "---" between
             * YAML documents; JSON is one object per line */
            if (ctl->out == CTL_OUT_YAML) {
                printf("---\n");
            } else if (ctl->out != CTL_OUT_JSON) {
                printf("\n");
            }
        }
        /* a failed round (router restarting) is reported and retried */
        rc = list(ctl, n_args, args);
        if (rc == CTL_EXIT_USAGE) {
            return rc;
        }
        if (ctl_stdout_gone()) {
            return CTL_EXIT_OK;
        }
        if (!ctl_sleep(ctl->cfg.interval_ms - (ctl_mono_ms() - start))) {
            return CTL_EXIT_OK;
        }
    }
}

/* A node's report sent before it saw the drain still says ready: only a
 * node ready this long was undrained by someone else. */
#define CTL_DRAIN_READY_GRACE_MS 5000

/* One look at the node: *done_p when it holds nothing, *ready_p when it
 * reads as ready (not draining). */
static int ctl_drain_poll(ctl_t *ctl, const char *node, bool *done_p, bool *ready_p,
                          char *status, size_t size)
{
    json_t *nodes, *reqs, *n;
    char state[16];
    size_t n_reqs;
    int rc;

    if ((rc = ctl_find_node(ctl, node, &nodes, &n)) != CTL_EXIT_OK) {
        return rc;
    }
    if (n == NULL) {
        /* stopped after draining: it left the table, holding nothing */
        snprintf(status, size, "%s: gone (no longer registered)", node);
        *done_p = true;
        json_decref(nodes);
        return CTL_EXIT_OK;
    }
    ctl_enum(n, "state", "NODE_STATE_", state, sizeof(state));
    if (strcmp(state, "lost") == 0) {
        fprintf(stderr, "batonctl: drain: %s is lost: it stopped heartbeating while "
                "draining\n", node);
        json_decref(nodes);
        return CTL_EXIT_FAIL;
    }
    *ready_p = strcmp(state, "ready") == 0;
    if ((rc = ctl_list_requests(ctl, node, &reqs)) != CTL_EXIT_OK) {
        json_decref(nodes);
        return rc;
    }
    n_reqs = json_array_size(json_object_get(reqs, "requests"));
    /* drained: the node says so, or nothing of it is left anywhere */
    *done_p = strcmp(state, "drained") == 0 ||
              (!*ready_p && n_reqs == 0 && ctl_int(n, "running_sequences") == 0 &&
               ctl_int(n, "queued_prefill_tokens") == 0);
    if (*done_p) {
        snprintf(status, size, "%s: drained", node);
    } else {
        snprintf(status, size, "%s: %s, %zu request(s) in flight, %lld running "
                 "sequence(s)", node, state, n_reqs, ctl_int(n, "running_sequences"));
    }
    json_decref(reqs);
    json_decref(nodes);
    return CTL_EXIT_OK;
}

int ctl_drain_wait(ctl_t *ctl, const char *node)
{
    bool table = ctl->out == CTL_OUT_TABLE || ctl->out == CTL_OUT_WIDE;
    int64_t start = ctl_mono_ms(), wait_ms = ctl->cfg.timeout_ms;
    int64_t ready_since = -1;
    char status[256], last[256] = "";
    int rc;

    ctl_signals_install();
    for (;;) {
        bool done = false, ready = false;
        int64_t left;

        if ((rc = ctl_drain_poll(ctl, node, &done, &ready, status, sizeof(status))) !=
            CTL_EXIT_OK) {
            return rc;
        }
        if (!ready) {
            ready_since = -1;
        } else if (ready_since < 0) {
            ready_since = ctl_mono_ms();
        } else if (ctl_mono_ms() - ready_since > CTL_DRAIN_READY_GRACE_MS) {
            fprintf(stderr, "batonctl: drain: %s is ready again: it was undrained "
                    "meanwhile\n", node);
            return CTL_EXIT_FAIL;
        }
        /* progress on stdout for people; json/yaml stay one answer */
        if (strcmp(status, last) != 0) {
            fprintf(table ? stdout : stderr, "%s\n", status);
            fflush(table ? stdout : stderr);
            snprintf(last, sizeof(last), "%s", status);
        }
        if (done) {
            return CTL_EXIT_OK;
        }
        left = wait_ms < 0 ? ctl->cfg.interval_ms
                           : wait_ms - (ctl_mono_ms() - start);
        if (left <= 0) {
            fprintf(stderr, "batonctl: drain: timed out after %lld ms: %s\n",
                    (long long)wait_ms, status);
            return CTL_EXIT_TIMEOUT;
        }
        if (!ctl_sleep(left < ctl->cfg.interval_ms ? left : ctl->cfg.interval_ms)) {
            fprintf(stderr, "batonctl: drain: interrupted: %s\n", status);
            return CTL_EXIT_TIMEOUT;
        }
        /* a call never outlasts the wait */
        if (wait_ms >= 0) {
            left = wait_ms - (ctl_mono_ms() - start);
            if (left > 0 && left < ctl->call_ms) {
                ctl->call_ms = left;
            }
        }
    }
}
