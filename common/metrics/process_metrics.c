/* The metrics every daemon exports about itself: `baton_build_info` and
 * the Prometheus client libraries' standard process_* series, read from
 * /proc at each scrape (Linux only; a file that cannot be read leaves its
 * series at its last value). */
#include "process_metrics.h"

#include "bt_config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct bt_process_metrics {
    bt_gauge_t   *rss;
    bt_gauge_t   *vsize;
    bt_gauge_t   *open_fds;
    bt_gauge_t   *max_fds;
    bt_counter_t *cpu;
    bt_gauge_t   *start;
};

bt_process_metrics_t *bt_process_metrics_register(bt_metrics_t *reg)
{
    bt_process_metrics_t *p = calloc(1, sizeof(*p));
    char labels[128];

    if (p == NULL) {
        return NULL;
    }
    bt_gauge_set(bt_metrics_gauge(reg, "baton_build_info",
                                  "the version this daemon was built from (always 1)",
                                  bt_metrics_labels(labels, sizeof(labels),
                                                    "version", BT_VERSION, NULL)),
                 1);
    p->rss = bt_metrics_gauge(reg, "process_resident_memory_bytes",
                              "resident memory size in bytes", NULL);
    p->vsize = bt_metrics_gauge(reg, "process_virtual_memory_bytes",
                                "virtual memory size in bytes", NULL);
    p->open_fds = bt_metrics_gauge(reg, "process_open_fds",
                                   "open file descriptors", NULL);
    p->max_fds = bt_metrics_gauge(reg, "process_max_fds",
                                  "the open file descriptor limit", NULL);
    p->cpu = bt_metrics_counter(reg, "process_cpu_seconds_total",
                                "user and system CPU time spent in seconds", NULL);
    p->start = bt_metrics_gauge(reg, "process_start_time_seconds",
                                "start time of the process since the Unix epoch in seconds",
                                NULL);
    if (p->rss == NULL || p->vsize == NULL || p->open_fds == NULL ||
        p->max_fds == NULL || p->cpu == NULL || p->start == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

void bt_process_metrics_free(bt_process_metrics_t *p)
{
    free(p);
}

static void bt_process_metrics_collect(void *arg)
{
    bt_process_metrics_update(arg);
}

static void bt_process_metrics_release(void *arg)
{
    bt_process_metrics_free(arg);
}

bt_metrics_t *bt_metrics_create(void)
{
    bt_metrics_t *reg = bt_metrics_create_bare();
    bt_process_metrics_t *p;

    if (reg == NULL) {
        return NULL;
    }
    p = bt_process_metrics_register(reg);
    if (p != NULL) {
        bt_metrics_on_render(reg, bt_process_metrics_collect,
                             bt_process_metrics_release, p);
    }
    return reg;
}

static int bt_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n - 1;  /* the directory's own descriptor */
}

/* The system's boot time (`btime` of /proc/stat), 0 if unknown. */
static unsigned long long bt_boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[256];
    unsigned long long btime = 0;

    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "btime %llu", &btime) == 1) {
            break;
        }
    }
    fclose(f);
    return btime;
}

/* utime, stime (fields 14, 15), starttime (22), vsize (23), rss (24) of
 * /proc/self/stat; the command name (field 2) may hold spaces and ends at
 * the last ')'. */
static void bt_read_stat(bt_process_metrics_t *p, double tick, double page)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n;
    char *s;
    unsigned long long utime, stime, starttime, vsize;
    long long rss;

    if (f == NULL) {
        return;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    s = strrchr(buf, ')');
    if (s == NULL ||
        sscanf(s + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu"
                      " %*d %*d %*d %*d %*d %*d %llu %llu %lld",
               &utime, &stime, &starttime, &vsize, &rss) != 5) {
        return;
    }
    bt_counter_add(p->cpu, (double)(utime + stime) / tick - bt_metric_value(p->cpu));
    bt_gauge_set(p->vsize, (double)vsize);
    bt_gauge_set(p->rss, (double)rss * page);
    if (bt_metric_value(p->start) == 0) {
        bt_gauge_set(p->start, (double)bt_boot_time() + (double)starttime / tick);
    }
}

void bt_process_metrics_update(bt_process_metrics_t *p)
{
    long tick = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;
    int fds;

    if (p == NULL || tick <= 0 || page <= 0) {
        return;
    }
    bt_read_stat(p, (double)tick, (double)page);
    fds = bt_count_fds();
    if (fds >= 0) {
        bt_gauge_set(p->open_fds, fds);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        bt_gauge_set(p->max_fds, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
    }
}
