/* baton-run tokenize / detokenize: the tokenizer of a model folder as a
 * filter. tokenize prints `[id, ...]` (no BOS unless --bos); detokenize
 * reads such an array and prints the text. */
#include "run_cmds.h"

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/opts.h"
#include "engine/tokenizer/tokenizer.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *tokenizer;
    bool        bos;
    bool        special;
    bool        skip_special;
    uint64_t    max_input;
} tok_cfg_t;

#define O(f) offsetof(tok_cfg_t, f)
static const bt_opt_t tokenize_opts[] = {
    {"tokenizer", 0, "BATON_TOKENIZER", NULL,
     "folder with tokenizer.json (and tokenizer_config.json)", BT_OPT_STRING,
     0, 0, NULL, O(tokenizer)},
    {"bos", 0, "-", "false", "add the BOS/EOS of the post-processor",
     BT_OPT_BOOL, 0, 0, NULL, O(bos)},
    {"special", 0, "-", "false",
     "match special tokens written in the text (<|eot_id|>)", BT_OPT_BOOL, 0,
     0, NULL, O(special)},
    {"max-input", 0, "-", "256M", "largest input read from stdin",
     BT_OPT_SIZE, 1, 1024.0 * 1024 * 1024, NULL, O(max_input)},
};

static const bt_opt_t detokenize_opts[] = {
    {"tokenizer", 0, "BATON_TOKENIZER", NULL,
     "folder with tokenizer.json (and tokenizer_config.json)", BT_OPT_STRING,
     0, 0, NULL, O(tokenizer)},
    {"skip-special", 0, "-", "false", "leave special tokens out",
     BT_OPT_BOOL, 0, 0, NULL, O(skip_special)},
    {"max-input", 0, "-", "256M", "largest input read from stdin",
     BT_OPT_SIZE, 1, 1024.0 * 1024 * 1024, NULL, O(max_input)},
};
#undef O

static const bt_opts_spec_t tokenize_spec = {
    "baton-run tokenize", "--tokenizer DIR [OPTIONS] < text",
    "Reads UTF-8 text on stdin and prints its token ids as one JSON array.",
    tokenize_opts, BT_OPTS_COUNT(tokenize_opts),
};

static const bt_opts_spec_t detokenize_spec = {
    "baton-run detokenize", "--tokenizer DIR [OPTIONS] < ids.json",
    "Reads a JSON array of token ids on stdin and prints the text.",
    detokenize_opts, BT_OPTS_COUNT(detokenize_opts),
};

static int read_stdin(size_t max, bt_buf_t *in)
{
    char chunk[65536];
    size_t n;

    bt_buf_init(in, max);
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
        if (bt_buf_append(in, chunk, n) != BT_OK) {
            fprintf(stderr, "baton-run: input is over %zu bytes\n", max);
            return -1;
        }
    }
    if (ferror(stdin)) {
        fprintf(stderr, "baton-run: cannot read stdin\n");
        return -1;
    }
    return 0;
}

static int setup(const bt_opts_spec_t *spec, tok_cfg_t *cfg, int argc,
                 char **argv, bt_tok_t **tok_p, bt_buf_t *in)
{
    char err[BT_TOK_ERR_SIZE];
    int first;

    bt_log_init("baton-run", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
    first = bt_opts_parse_or_exit(spec, cfg, argc, argv);
    if (first < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", spec->prog,
                argv[first]);
        return 2;
    }
    if (cfg->tokenizer == NULL) {
        fprintf(stderr, "%s: --tokenizer DIR is required\n", spec->prog);
        return 2;
    }
    if (bt_tok_load_dir(cfg->tokenizer, tok_p, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "%s: %s\n", spec->prog, err);
        return 1;
    }
    if (read_stdin((size_t)cfg->max_input, in) != 0) {
        bt_tok_destroy(*tok_p);
        bt_buf_cleanup(in);
        return 1;
    }
    return 0;
}

int bt_run_tokenize_main(int argc, char **argv)
{
    tok_cfg_t cfg = {0};
    bt_tok_t *tok = NULL;
    bt_buf_t in, out;
    bt_tok_ids_t ids;
    char err[BT_TOK_ERR_SIZE];
    int rc = setup(&tokenize_spec, &cfg, argc, argv, &tok, &in);

    if (rc != 0)
        return rc;
    bt_tok_ids_init(&ids, in.len + 64);
    bt_buf_init(&out, 16 * in.len + 64);
    if (bt_tok_encode(tok, in.data ? in.data : "", in.len,
                      (cfg.bos ? BT_TOK_ADD_SPECIAL : 0) |
                          (cfg.special ? BT_TOK_PARSE_SPECIAL : 0),
                      &ids, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "baton-run tokenize: %s\n", err);
        rc = 1;
        goto out;
    }
    bt_buf_append_byte(&out, '[');
    for (size_t i = 0; i < ids.n; i++)
        bt_buf_printf(&out, i ? ", %d" : "%d", ids.ids[i]);
    bt_buf_append_str(&out, "]\n");
    if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout)) {
        fprintf(stderr, "baton-run tokenize: cannot write stdout\n");
        rc = 1;
    }
out:
    bt_tok_ids_cleanup(&ids);
    bt_buf_cleanup(&out);
    bt_buf_cleanup(&in);
    bt_tok_destroy(tok);
    return rc;
}

int bt_run_detokenize_main(int argc, char **argv)
{
    tok_cfg_t cfg = {0};
    bt_tok_t *tok = NULL;
    bt_buf_t in, out;
    json_t *arr = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    char err[BT_TOK_ERR_SIZE];
    int rc = setup(&detokenize_spec, &cfg, argc, argv, &tok, &in);

    if (rc != 0)
        return rc;
    bt_buf_init(&out, (size_t)1 << 30);
    if (bt_json_parse(in.data ? in.data : "", in.len, in.max, &arr, err,
                      sizeof(err)) != BT_OK || !json_is_array(arr)) {
        fprintf(stderr, "baton-run detokenize: stdin: %s\n",
                arr ? "expected a JSON array of token ids" : err);
        rc = 1;
        goto out;
    }
    n = json_array_size(arr);
    ids = malloc((n + 1) * sizeof(*ids));
    if (ids == NULL) {
        rc = 1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= bt_tok_vocab_size(tok)) {
            fprintf(stderr, "baton-run detokenize: element %zu is not a "
                    "token id of this tokenizer\n", i);
            rc = 1;
            goto out;
        }
        ids[i] = (int32_t)id;
    }
    if (bt_tok_decode(tok, ids, n, cfg.skip_special, &out, err,
                      sizeof(err)) != BT_OK) {
        fprintf(stderr, "baton-run detokenize: %s\n", err);
        rc = 1;
        goto out;
    }
    if (fwrite(out.data ? out.data : "", 1, out.len, stdout) != out.len ||
        fflush(stdout)) {
        fprintf(stderr, "baton-run detokenize: cannot write stdout\n");
        rc = 1;
    }
out:
    free(ids);
    json_decref(arr);
    bt_buf_cleanup(&out);
    bt_buf_cleanup(&in);
    bt_tok_destroy(tok);
    return rc;
}
