/* libFuzzer: the OpenAI request bodies the router's HTTP API parses
 * (router/openai_req.c), /v1/chat/completions and /v1/completions. The
 * first byte picks the API, the rest is the body. A body that parses must
 * give a GenerateRequest with a model and a prompt (text, ids or chat
 * messages) that protobuf-c packs and reads back; one that fails must say
 * why. */
#include "openai.h"

#include "base/log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_BODY (256u * 1024u)

static void check_packs(const Baton__V1__GenerateRequest *gen)
{
    size_t n = baton__v1__generate_request__get_packed_size(gen);
    uint8_t *buf = malloc(n ? n : 1);
    Baton__V1__GenerateRequest *back;

    if (buf == NULL) {
        return;
    }
    if (baton__v1__generate_request__pack(gen, buf) != n) {
        abort();
    }
    back = baton__v1__generate_request__unpack(NULL, n, buf);
    if (back == NULL || strcmp(back->model, gen->model) != 0 ||
        back->input_case != gen->input_case) {
        abort();
    }
    baton__v1__generate_request__free_unpacked(back, NULL);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    bt_openai_kind_t kind;
    bt_openai_req_t req;
    bt_arena_t *arena;
    char err[512], param[128];
    bt_status_t s;

    if (!quiet) {
        bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
        quiet = 1;
    }
    if (size < 1 || size > FUZZ_MAX_BODY + 1) {
        return 0;
    }
    kind = (data[0] & 1) ? BT_OPENAI_CHAT : BT_OPENAI_COMPLETIONS;
    /* the router's arena budget for a body of at most FUZZ_MAX_BODY */
    arena = bt_arena_create(16384, FUZZ_MAX_BODY * 4 + (1 << 20));
    if (arena == NULL) {
        return 0;
    }
    s = bt_openai_parse(kind, (const char *)data + 1, size - 1, FUZZ_MAX_BODY,
                        arena, &req, err, sizeof(err), param, sizeof(param));
    if (s == BT_OK) {
        if (req.gen.model == NULL || req.gen.model[0] == '\0' ||
            req.gen.sampling != &req.sampling ||
            req.gen.input_case == BATON__V1__GENERATE_REQUEST__INPUT__NOT_SET ||
            (kind == BT_OPENAI_CHAT) !=
                (req.gen.input_case == BATON__V1__GENERATE_REQUEST__INPUT_CHAT) ||
            (req.include_usage && !req.stream)) {
            abort();
        }
        check_packs(&req.gen);
    } else if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL ||
               memchr(param, '\0', sizeof(param)) == NULL) {
        abort();
    }
    bt_arena_destroy(arena);
    return 0;
}
