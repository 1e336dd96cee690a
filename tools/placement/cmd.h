/* baton-placement subcommands; each returns the process exit status
 * (0 ok, 1 bad input file or failure, 2 bad option). */
#ifndef BT_PLACEMENT_CMD_H
#define BT_PLACEMENT_CMD_H

int bt_placement_cmd_plan(int argc, char **argv);
int bt_placement_cmd_synth(int argc, char **argv);

#endif
