/* PCRE2 in UTF + UCP mode, compiled once per pattern at load, JIT where the
 * platform has it. Match data is per call so a loaded tokenizer can be
 * shared by threads. */
#include "tok_int.h"

#include "base/log.h"

/* GPT-2's pre-tokenizer regex (ByteLevel use_regex). */
const char tok_re_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"
    "|\\s+(?!\\S)|\\s+";

/* Llama-3's Split regex. */
const char tok_re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)"
    "|\\s+";

bt_status_t tok_regex_compile(tok_regex_t *re, const char *pattern,
                              size_t len, bool literal, char *err,
                              size_t err_size)
{
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;

    if (tok_utf8_validate(pattern, len) != len) {
        tok_err(err, err_size, "pattern is not valid UTF-8");
        return BT_ERR_INVALID_ARG;
    }
    if (literal)
        opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK | PCRE2_LITERAL; /* no UCP */
    re->code = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &code, &off,
                             NULL);
    if (re->code == NULL) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(code, msg, sizeof(msg));
        tok_err(err, err_size, "regex error at offset %zu: %s", (size_t)off,
                (const char *)msg);
        return BT_ERR_INVALID_ARG;
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return BT_OK;
}

void tok_regex_cleanup(tok_regex_t *re)
{
    pcre2_code_free(re->code);
    re->code = NULL;
}

int tok_regex_next(const tok_regex_t *re, pcre2_match_data *md,
                   const char *s, size_t len, size_t start,
                   size_t *mstart_p, size_t *mend_p)
{
    while (start <= len) {
        int rc;
        PCRE2_SIZE *ov;

        if (re->jit)
            rc = pcre2_jit_match(re->code, (PCRE2_SPTR)s, len, start, 0, md,
                                 NULL);
        else
            rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, start,
                             PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, start,
                             PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            return 0;
        if (rc < 0) {
            bt_error("tokenizer regex match failed: code %d", rc);
            return BT_ERR_INTERNAL;
        }
        ov = pcre2_get_ovector_pointer(md);
        if (ov[1] > ov[0]) {
            *mstart_p = ov[0];
            *mend_p = ov[1];
            return 1;
        }
        /* Empty match: HF drops empty pieces; look again one char on. */
        if (ov[0] >= len)
            return 0;
        start = ov[0] + 1;
        while (start < len && ((unsigned char)s[start] & 0xc0) == 0x80)
            start++;
    }
    return 0;
}
