/* baton-run subcommands. Each takes argv[0] = its own name and returns the
 * process exit code (0 ok, 1 failure, 2 usage). */
#ifndef BT_RUN_CMDS_H
#define BT_RUN_CMDS_H

int bt_run_tokenize_main(int argc, char **argv);
int bt_run_detokenize_main(int argc, char **argv);

#endif
