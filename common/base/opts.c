#include "opts.h"

#include "bt_config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BT_OPTS_MAX 128
#define BT_OPT_HELP_ID    0x10000
#define BT_OPT_VERSION_ID 0x10001

static void bt_opts_env_name(const bt_opt_t *opt, char *out, size_t size)
{
    size_t i, o;

    if (opt->env != NULL) {
        snprintf(out, size, "%s", opt->env);
        return;
    }
    o = (size_t)snprintf(out, size, "BATON_");
    for (i = 0; opt->name[i] != '\0' && o + 1 < size; i++) {
        char c = opt->name[i];

        out[o++] = c == '-' ? '_' : (char)toupper((unsigned char)c);
    }
    out[o] = '\0';
}

bt_status_t bt_opts_parse_bool(const char *text, bool *value_p)
{
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "0", "false", "no", "off" };
    size_t i;

    for (i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *value_p = true;
            return BT_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *value_p = false;
            return BT_OK;
        }
    }
    return BT_ERR_INVALID_ARG;
}

bt_status_t bt_opts_parse_size(const char *text, uint64_t *bytes_p)
{
    char *end;
    double v;
    double mult = 1;

    errno = 0;
    v = strtod(text, &end);
    if (end == text || errno != 0 || !(v >= 0) || isinf(v)) {
        return BT_ERR_INVALID_ARG;
    }
    switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1024.0; end++; break;
    case 'M': mult = 1024.0 * 1024; end++; break;
    case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mult > 1 && (end[0] == 'i' || end[0] == 'I')) {
        end++;
    }
    if (*end == 'B' || *end == 'b') {
        end++;
    }
    if (*end != '\0' || v * mult > 18446744073709549568.0) {
        return BT_ERR_INVALID_ARG;
    }
    *bytes_p = (uint64_t)(v * mult);
    return BT_OK;
}

bt_status_t bt_opts_parse_duration(const char *text, int64_t *ms_p)
{
    char *end;
    double v;
    double mult;

    errno = 0;
    v = strtod(text, &end);
    if (end == text || errno != 0 || !(v >= 0) || isinf(v)) {
        return BT_ERR_INVALID_ARG;
    }
    if (*end == '\0' && v != 0) {
        /* "30" could mean 30 ms or 30 s: say which */
        return BT_ERR_INVALID_ARG;
    }
    if (*end == '\0' || strcmp(end, "ms") == 0) {
        mult = 1;
    } else if (strcmp(end, "s") == 0) {
        mult = 1000;
    } else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) {
        mult = 60000;
    } else if (strcmp(end, "h") == 0) {
        mult = 3600000;
    } else {
        return BT_ERR_INVALID_ARG;
    }
    if (v * mult > 9.2e18) {
        return BT_ERR_INVALID_ARG;
    }
    *ms_p = (int64_t)llround(v * mult);
    return BT_OK;
}

static bool bt_opt_has_range(const bt_opt_t *opt)
{
    return !(opt->min == 0 && opt->max == 0);
}

static const char *bt_opt_type_hint(const bt_opt_t *opt)
{
    switch (opt->type) {
    case BT_OPT_BOOL:     return "BOOL";
    case BT_OPT_INT:      return "INT";
    case BT_OPT_DOUBLE:   return "NUM";
    case BT_OPT_STRING:   return "STR";
    case BT_OPT_SIZE:     return "SIZE";
    case BT_OPT_DURATION: return "DURATION";
    case BT_OPT_ENUM:     return opt->choices;
    }
    return "?";
}

/* A bound of milliseconds in the largest unit that divides it. */
static void bt_opt_ms_text(double ms, char *out, size_t size)
{
    static const struct { double ms; const char *unit; } units[] = {
        { 3600000, "h" }, { 60000, "m" }, { 1000, "s" },
    };

    for (size_t i = 0; ms != 0 && i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms >= units[i].ms && ms / units[i].ms == (double)(int64_t)(ms / units[i].ms)) {
            snprintf(out, size, "%.0f%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
    if (ms == 0) {
        snprintf(out, size, "0");
    } else {
        snprintf(out, size, "%.0fms", ms);
    }
}

static void bt_opt_range_text(const bt_opt_t *opt, char *out, size_t size)
{
    if (!bt_opt_has_range(opt)) {
        out[0] = '\0';
    } else if (opt->type == BT_OPT_DURATION) {
        char lo[32], hi[32];

        bt_opt_ms_text(opt->min, lo, sizeof(lo));
        bt_opt_ms_text(opt->max, hi, sizeof(hi));
        snprintf(out, size, " in [%s, %s]", lo, hi);
    } else if (opt->type == BT_OPT_DOUBLE) {
        snprintf(out, size, " in [%g, %g]", opt->min, opt->max);
    } else {
        snprintf(out, size, " in [%.0f, %.0f]", opt->min, opt->max);
    }
}

/* Finds `text` among "a|b|c"; returns its index or -1. */
static int bt_opt_choice_index(const char *choices, const char *text)
{
    const char *p = choices;
    size_t len = strlen(text);
    int idx = 0;

    while (p != NULL && *p != '\0') {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);

        if (n == len && strncmp(p, text, n) == 0) {
            return idx;
        }
        idx++;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

/* Stores `text` into the option's field; on error fills `err`.
 * `source` names where the value came from, for the message. */
static bt_status_t bt_opt_set(const bt_opt_t *opt, void *cfg, const char *text,
                              const char *source, char *err, size_t err_size)
{
    char *field = (char *)cfg + opt->offset;
    char range[96];
    char *end;
    double d;
    int64_t i64;
    uint64_t u64;
    bool b;
    int idx;

    bt_opt_range_text(opt, range, sizeof(range));
    switch (opt->type) {
    case BT_OPT_BOOL:
        if (bt_opts_parse_bool(text, &b) != BT_OK) {
            goto err_type;
        }
        *(bool *)field = b;
        return BT_OK;
    case BT_OPT_INT:
        errno = 0;
        i64 = strtoll(text, &end, 10);
        if (end == text || *end != '\0' || errno != 0) {
            goto err_type;
        }
        d = (double)i64;
        break;
    case BT_OPT_DOUBLE:
        errno = 0;
        d = strtod(text, &end);
        if (end == text || *end != '\0' || errno != 0 || isnan(d)) {
            goto err_type;
        }
        break;
    case BT_OPT_STRING:
        *(const char **)field = text;
        return BT_OK;
    case BT_OPT_SIZE:
        if (bt_opts_parse_size(text, &u64) != BT_OK) {
            goto err_type;
        }
        d = (double)u64;
        break;
    case BT_OPT_DURATION:
        if (bt_opts_parse_duration(text, &i64) != BT_OK) {
            goto err_type;
        }
        d = (double)i64;
        break;
    case BT_OPT_ENUM:
        idx = bt_opt_choice_index(opt->choices, text);
        if (idx < 0) {
            snprintf(err, err_size, "invalid value '%s' for %s: expected one of %s",
                     text, source, opt->choices);
            return BT_ERR_INVALID_ARG;
        }
        *(int *)field = idx;
        return BT_OK;
    default:
        snprintf(err, err_size, "option --%s has an unknown type", opt->name);
        return BT_ERR_INTERNAL;
    }

    if (bt_opt_has_range(opt) && (d < opt->min || d > opt->max)) {
        snprintf(err, err_size, "value '%s' for %s is out of range: expected %s%s",
                 text, source, bt_opt_type_hint(opt), range);
        return BT_ERR_INVALID_ARG;
    }
    switch (opt->type) {
    case BT_OPT_INT:      *(int64_t *)field = i64; break;
    case BT_OPT_DOUBLE:   *(double *)field = d; break;
    case BT_OPT_SIZE:     *(uint64_t *)field = u64; break;
    case BT_OPT_DURATION: *(int64_t *)field = i64; break;
    default: break;
    }
    return BT_OK;

err_type:
    snprintf(err, err_size, "invalid value '%s' for %s: expected %s%s%s", text,
             source, bt_opt_type_hint(opt),
             opt->type == BT_OPT_SIZE ? " (e.g. 512M, 4GiB)" :
             opt->type == BT_OPT_DURATION ? " with a unit (e.g. 500ms, 30s, 5m)" : "",
             range);
    return BT_ERR_INVALID_ARG;
}

bt_status_t bt_opts_parse(const bt_opts_spec_t *spec, void *cfg, int argc,
                          char **argv, int *first_arg_p, char *err,
                          size_t err_size)
{
    struct option longopts[BT_OPTS_MAX + 3];
    char shortopts[BT_OPTS_MAX * 3 + 4];
    char source[160];
    char env_name[128];
    size_t i, s = 0;
    bt_status_t status;
    const char *value;
    bool word;
    int c;

    err[0] = '\0';
    if (spec->n_opts > BT_OPTS_MAX) {
        snprintf(err, err_size, "too many options in the table");
        return BT_ERR_INTERNAL;
    }

    /* defaults, then environment */
    for (i = 0; i < spec->n_opts; i++) {
        const bt_opt_t *opt = &spec->opts[i];
        const char *env;

        if (opt->defval != NULL) {
            snprintf(source, sizeof(source), "the default of --%s", opt->name);
            status = bt_opt_set(opt, cfg, opt->defval, source, err, err_size);
            if (status != BT_OK) {
                return BT_ERR_INTERNAL;
            }
        }
        bt_opts_env_name(opt, env_name, sizeof(env_name));
        env = getenv(env_name);
        if (env != NULL) {
            snprintf(source, sizeof(source), "%s", env_name);
            status = bt_opt_set(opt, cfg, env, source, err, err_size);
            if (status != BT_OK) {
                return status;
            }
        }
    }

    /* flags */
    shortopts[s++] = ':'; /* report a missing argument as ':' */
    for (i = 0; i < spec->n_opts; i++) {
        const bt_opt_t *opt = &spec->opts[i];

        longopts[i].name = opt->name;
        longopts[i].has_arg = opt->type == BT_OPT_BOOL ? optional_argument
                                                        : required_argument;
        longopts[i].flag = NULL;
        longopts[i].val = (int)i + 1000;
        if (opt->short_name != 0) {
            shortopts[s++] = opt->short_name;
            shortopts[s++] = ':';
            if (opt->type == BT_OPT_BOOL) {
                shortopts[s++] = ':';
            }
        }
    }
    shortopts[s++] = 'h';
    shortopts[s] = '\0';
    longopts[i] = (struct option){ "help", no_argument, NULL, BT_OPT_HELP_ID };
    longopts[i + 1] = (struct option){ "version", no_argument, NULL,
                                       BT_OPT_VERSION_ID };
    longopts[i + 2] = (struct option){ NULL, 0, NULL, 0 };

    optind = 0; /* full re-initialisation in glibc */
    opterr = 0;
    for (;;) {
        int longidx = -1;
        const bt_opt_t *opt = NULL;

        c = getopt_long(argc, argv, shortopts, longopts, &longidx);
        if (c == -1) {
            break;
        }
        if (c == 'h' || c == BT_OPT_HELP_ID) {
            *first_arg_p = -1;
            return BT_ERR_CANCELLED;
        }
        if (c == BT_OPT_VERSION_ID) {
            *first_arg_p = -2;
            return BT_ERR_CANCELLED;
        }
        if (c == '?' || c == ':') {
            const char *arg = argv[optind - 1];

            if (c == ':') {
                snprintf(err, err_size, "option '%s' requires a value", arg);
            } else if (optopt != 0 && optopt < 256) {
                snprintf(err, err_size, "unknown option '-%c'", optopt);
            } else {
                snprintf(err, err_size, "unknown option '%s' (see --help)", arg);
            }
            return BT_ERR_INVALID_ARG;
        }
        if (c >= 1000 && c < 1000 + (int)spec->n_opts) {
            opt = &spec->opts[c - 1000];
        } else {
            for (i = 0; i < spec->n_opts; i++) {
                if (spec->opts[i].short_name == c) {
                    opt = &spec->opts[i];
                }
            }
        }
        if (opt == NULL) {
            snprintf(err, err_size, "unknown option '%s'", argv[optind - 1]);
            return BT_ERR_INVALID_ARG;
        }
        snprintf(source, sizeof(source), "--%s", opt->name);
        value = optarg != NULL ? optarg : "true";
        /* "--flag false" means what it says: a boolean word right after a
         * bare BOOL flag is its value, not a positional argument */
        if (opt->type == BT_OPT_BOOL && optarg == NULL && optind < argc &&
            bt_opts_parse_bool(argv[optind], &word) == BT_OK) {
            value = argv[optind++];
        }
        status = bt_opt_set(opt, cfg, value, source, err, err_size);
        if (status != BT_OK) {
            return status;
        }
    }
    *first_arg_p = optind;
    return BT_OK;
}

void bt_opts_print_help(const bt_opts_spec_t *spec, FILE *out)
{
    char env_name[128];
    char range[96];
    size_t i;

    fprintf(out, "Usage: %s %s\n\n", spec->prog,
            spec->usage ? spec->usage : "[OPTIONS]");
    if (spec->summary != NULL) {
        fprintf(out, "%s\n\n", spec->summary);
    }
    fprintf(out, "Options (each also set by its environment variable; a flag "
                 "wins over the environment):\n");
    for (i = 0; i < spec->n_opts; i++) {
        const bt_opt_t *opt = &spec->opts[i];
        char flag[96];

        bt_opts_env_name(opt, env_name, sizeof(env_name));
        bt_opt_range_text(opt, range, sizeof(range));
        if (opt->short_name != 0) {
            snprintf(flag, sizeof(flag), "-%c, --%s", opt->short_name, opt->name);
        } else {
            snprintf(flag, sizeof(flag), "    --%s", opt->name);
        }
        fprintf(out, "  %s=%s\n      %s\n      [env %s; default %s%s%s]\n",
                flag, bt_opt_type_hint(opt), opt->doc, env_name,
                opt->defval ? opt->defval : "unset",
                range[0] ? ";" : "", range);
    }
    fprintf(out, "  -h, --help\n      print this help and exit\n"
                 "      --version\n      print the version and exit\n");
}

int bt_opts_parse_or_exit(const bt_opts_spec_t *spec, void *cfg, int argc,
                          char **argv)
{
    char err[512];
    int first = 0;
    bt_status_t status;

    status = bt_opts_parse(spec, cfg, argc, argv, &first, err, sizeof(err));
    if (status == BT_OK) {
        return first;
    }
    if (status == BT_ERR_CANCELLED && first == -1) {
        bt_opts_print_help(spec, stdout);
        exit(0);
    }
    if (status == BT_ERR_CANCELLED && first == -2) {
        printf("%s %s\n", spec->prog, BT_VERSION);
        exit(0);
    }
    fprintf(stderr, "%s: %s\n", spec->prog, err);
    exit(2);
}

void bt_opts_parse_only_or_exit(const bt_opts_spec_t *spec, void *cfg,
                                int argc, char **argv)
{
    int first = bt_opts_parse_or_exit(spec, cfg, argc, argv);

    if (first < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n",
                spec->prog, argv[first]);
        exit(2);
    }
}
