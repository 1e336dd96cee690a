/* baton-run: run Baton's engine pieces from the command line. The first
 * argument names a subcommand (a small command table, Redis style); with
 * none (the first argument is a flag) it is `generate`. */
#include "run_cmds.h"
#include "run_generate.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*main_cb)(int argc, char **argv);
    const char *doc;
} run_cmd_t;

static const run_cmd_t cmds[] = {
    {"generate", bt_run_generate_main,
     "generate text with a model (the default: baton-run --model DIR ...)"},
    {"tokenize", bt_run_tokenize_main,
     "UTF-8 text on stdin -> token ids as one JSON array"},
    {"detokenize", bt_run_detokenize_main,
     "a JSON array of token ids on stdin -> text"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: baton-run [COMMAND] [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(*cmds); i++)
        fprintf(out, "  %-11s %s\n", cmds[i].name, cmds[i].doc);
    fprintf(out, "\n`baton-run COMMAND --help` describes its options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (argv[1][0] == '-') {
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        return bt_run_generate_main(argc, argv);
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(*cmds); i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].main_cb(argc - 1, argv + 1);
    fprintf(stderr, "baton-run: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
