/* Table-driven command-line options (UCX config-table style).
 *
 * One table per binary drives getopt_long, BATON_* environment variables,
 * --help and range validation. Precedence: default < environment < flag.
 * Each entry writes into a field of the caller's config struct at `offset`;
 * the C type of that field is fixed by the option type:
 *   BT_OPT_BOOL      bool         "true|false|1|0|yes|no|on|off"; a bare flag is true
 *   BT_OPT_INT       int64_t      decimal, range-checked
 *   BT_OPT_DOUBLE    double       range-checked
 *   BT_OPT_STRING    const char * borrowed from argv, environ or the table
 *   BT_OPT_SIZE      uint64_t     bytes, suffix K/M/G/T (binary, optional "iB"/"B")
 *   BT_OPT_DURATION  int64_t      milliseconds; a unit is required (ms, s, m, h):
 *                                 a bare number other than 0 is refused
 *   BT_OPT_ENUM      int          index into `choices` ("text|json")
 */
#ifndef BT_OPTS_H
#define BT_OPTS_H

#include "status.h"

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    BT_OPT_BOOL,
    BT_OPT_INT,
    BT_OPT_DOUBLE,
    BT_OPT_STRING,
    BT_OPT_SIZE,
    BT_OPT_DURATION,
    BT_OPT_ENUM,
} bt_opt_type_t;

typedef struct {
    const char   *name;       /* long flag without dashes: "grpc-port" */
    char          short_name; /* 0 for none */
    const char   *env;        /* NULL: BATON_ + upper-cased name, '-' -> '_' */
    const char   *defval;     /* textual default; NULL leaves the field as is */
    const char   *doc;        /* one line, lowercase */
    bt_opt_type_t type;
    double        min;        /* numeric range; min == max == 0: unbounded */
    double        max;
    const char   *choices;    /* BT_OPT_ENUM only: "a|b|c" */
    size_t        offset;     /* offsetof(config struct, field) */
} bt_opt_t;

typedef struct {
    const char     *prog;     /* "baton-router" */
    const char     *usage;    /* after the program name: "[OPTIONS]" */
    const char     *summary;  /* one paragraph shown by --help */
    const bt_opt_t *opts;
    size_t          n_opts;
} bt_opts_spec_t;

#define BT_OPTS_COUNT(_table) (sizeof(_table) / sizeof((_table)[0]))

/* Parse defaults, then the environment, then argv[1..argc-1] into `cfg`.
 * On success *first_arg_p is the index of the first positional argument
 * (argv is permuted so that positionals come last). --help and --version
 * are reported as BT_ERR_CANCELLED with `err` empty and *first_arg_p set
 * to -1 (help) or -2 (version); the caller prints. Any other failure
 * returns BT_ERR_INVALID_ARG with a one-line reason in `err`. */
bt_status_t bt_opts_parse(const bt_opts_spec_t *spec, void *cfg, int argc,
                          char **argv, int *first_arg_p, char *err,
                          size_t err_size);

/* Parse, or print help/version and exit 0, or print "prog: reason" and
 * exit 2. Returns the index of the first positional argument. */
int bt_opts_parse_or_exit(const bt_opts_spec_t *spec, void *cfg, int argc,
                          char **argv);
/* For programs that take no positional arguments (the daemons): parse as
 * above, then "prog: unexpected argument 'X'" and exit 2 if any is left. */
void bt_opts_parse_only_or_exit(const bt_opts_spec_t *spec, void *cfg,
                                int argc, char **argv);

void bt_opts_print_help(const bt_opts_spec_t *spec, FILE *out);

/* Value parsers, exposed for reuse and tests. */
bt_status_t bt_opts_parse_size(const char *text, uint64_t *bytes_p);
bt_status_t bt_opts_parse_duration(const char *text, int64_t *ms_p);
bt_status_t bt_opts_parse_bool(const char *text, bool *value_p);

#endif
