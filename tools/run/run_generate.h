/* `baton-run generate` (also `baton-run --model DIR ...`): load a model
 * folder, encode a prompt, run prefill and decode on the CPU backend with
 * the paged KV pool and the sampler, print text, tokens and timings. */
#ifndef BT_RUN_GENERATE_H
#define BT_RUN_GENERATE_H

/* argv[0] is the program (or subcommand) name; returns the exit code. */
int bt_run_generate_main(int argc, char **argv);

#endif
