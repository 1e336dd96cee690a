/* baton-placement: MoE expert placement plans from routing statistics
 * (docs/internals/placement.md). */
#include "cmd.h"

#include "base/log.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: baton-placement plan --counts FILE [--transitions FILE] "
            "[--current PLAN]\n"
            "           --devices N [--nodes K --groups G] "
            "--slots-per-device S [--json]\n"
            "       baton-placement synth --layers L --experts E --tokens T "
            "--zipf s\n"
            "           --correlation c --seed X --out-counts F "
            "[--out-transitions F]\n"
            "'baton-placement COMMAND --help' lists every option.\n");
}

int main(int argc, char **argv)
{
    bt_log_init("placement", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "plan") == 0) {
        return bt_placement_cmd_plan(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "synth") == 0) {
        return bt_placement_cmd_synth(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "baton-placement: unknown command '%s' (plan or synth; "
            "--help shows usage)\n", argv[1]);
    return 2;
}
