/* Request heads (RFC 9112), strictly: what a proxy and we could read
 * differently (both Content-Length and Transfer-Encoding, two different
 * lengths, folded lines, control bytes) is refused, never guessed. */
#include "http_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *bt_http_reason(int code)
{
    switch (code) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}

static int bt_http_method(const char *m)
{
    static const struct { const char *name; int bit; } methods[] = {
        { "GET", BT_HTTP_GET },       { "POST", BT_HTTP_POST },
        { "HEAD", BT_HTTP_HEAD },     { "PUT", BT_HTTP_PUT },
        { "DELETE", BT_HTTP_DELETE }, { "OPTIONS", BT_HTTP_OPTIONS },
        { "PATCH", BT_HTTP_PATCH },
    };

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(m, methods[i].name) == 0) {
            return methods[i].bit;
        }
    }
    return 0;
}

static bool bt_http_tchar(unsigned char c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Cuts the next line (ending "\n" or "\r\n") off *p; NULL at the end. */
static char *bt_http_line(char **p, char *end)
{
    char *line = *p, *nl;

    if (line >= end) {
        return NULL;
    }
    nl = memchr(line, '\n', (size_t)(end - line));
    if (nl == NULL) {
        return NULL;
    }
    *p = nl + 1;
    if (nl > line && nl[-1] == '\r') {
        nl--;
    }
    *nl = '\0';
    return line;
}

static int bt_http_bad(const char **why_p, const char *why)
{
    *why_p = why;
    return 400;
}

static int bt_http_request_line(char *line, bt_http_head_t *h,
                                const char **why_p)
{
    char *sp1 = strchr(line, ' '), *sp2, *q;

    if (sp1 == NULL || (sp2 = strchr(sp1 + 1, ' ')) == NULL ||
        strchr(sp2 + 1, ' ') != NULL) {
        return bt_http_bad(why_p, "malformed request line");
    }
    *sp1 = '\0';
    *sp2 = '\0';
    for (const char *c = line; *c; c++) {
        if (!bt_http_tchar((unsigned char)*c)) {
            return bt_http_bad(why_p, "malformed request method");
        }
    }
    if (line[0] == '\0') {
        return bt_http_bad(why_p, "malformed request line");
    }
    for (const char *c = sp1 + 1; *c; c++) {
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            return bt_http_bad(why_p, "malformed request target");
        }
    }
    if (strncmp(sp2 + 1, "HTTP/", 5) != 0 || !isdigit((unsigned char)sp2[6]) ||
        sp2[7] != '.' || !isdigit((unsigned char)sp2[8]) || sp2[9] != '\0') {
        return bt_http_bad(why_p, "malformed HTTP version");
    }
    if (sp2[6] != '1' || (sp2[8] != '0' && sp2[8] != '1')) {
        *why_p = "only HTTP/1.0 and HTTP/1.1 are served";
        return 505;
    }
    h->minor = sp2[8] - '0';
    h->method = bt_http_method(line);
    h->path = sp1 + 1;
    /* absolute-form (RFC 9112 3.2.2), which a server must accept too */
    if (strncasecmp(h->path, "http://", 7) == 0 ||
        strncasecmp(h->path, "https://", 8) == 0) {
        char *slash = strchr(strstr(h->path, "//") + 2, '/');

        h->path = slash != NULL ? slash : (char *)"/";
    }
    if (h->path[0] != '/') {
        return bt_http_bad(why_p, "the request target must be a path");
    }
    q = strpbrk(h->path, "?#");
    if (q != NULL) {
        *q = '\0';     /* routes ignore the query */
    }
    return 0;
}

static bool bt_http_has_token(const char *value, const char *token)
{
    size_t n = strlen(token);

    for (const char *p = value; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        if (strncasecmp(p, token, n) == 0 &&
            (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t')) {
            return true;
        }
        while (*p && *p != ',') {
            p++;
        }
    }
    return false;
}

static int bt_http_header_line(char *line, bt_http_head_t *h,
                               const char **why_p)
{
    char *colon, *v, *e;

    if (line[0] == ' ' || line[0] == '\t') {
        return bt_http_bad(why_p, "folded header lines are not accepted");
    }
    colon = strchr(line, ':');
    if (colon == NULL || colon == line) {
        return bt_http_bad(why_p, "malformed header line");
    }
    for (char *c = line; c < colon; c++) {
        if (!bt_http_tchar((unsigned char)*c)) {
            return bt_http_bad(why_p, "malformed header name");
        }
    }
    *colon = '\0';
    v = colon + 1;
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    e = v + strlen(v);
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) {
        *--e = '\0';
    }
    for (const char *c = v; *c; c++) {
        if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f) {
            return bt_http_bad(why_p, "control character in a header value");
        }
    }
    if (h->n_hdr == BT_HTTP_MAX_HDRS) {
        *why_p = "too many header lines";
        return 431;
    }
    h->hdr[h->n_hdr].name = line;
    h->hdr[h->n_hdr].value = v;
    h->n_hdr++;
    return 0;
}

/* Content-Length, Transfer-Encoding, Connection, Expect. */
static int bt_http_framing(bt_http_head_t *h, const char **why_p)
{
    bool have_len = false, have_te = false;
    const char *conn = NULL;

    h->keep_alive = h->minor == 1;
    for (size_t i = 0; i < h->n_hdr; i++) {
        const char *n = h->hdr[i].name, *v = h->hdr[i].value;

        if (strcasecmp(n, "Content-Length") == 0) {
            uint64_t len = 0;
            size_t digits = strlen(v);

            if (digits == 0 || digits > 15 || strspn(v, "0123456789") != digits) {
                return bt_http_bad(why_p, "malformed Content-Length");
            }
            len = strtoull(v, NULL, 10);
            if (have_len && len != h->content_length) {
                return bt_http_bad(why_p, "conflicting Content-Length headers");
            }
            have_len = true;
            h->content_length = len;
        } else if (strcasecmp(n, "Transfer-Encoding") == 0) {
            if (have_te || strcasecmp(v, "chunked") != 0) {
                *why_p = "only Transfer-Encoding: chunked is supported";
                return 501;
            }
            have_te = true;
        } else if (strcasecmp(n, "Content-Encoding") == 0 &&
                   strcasecmp(v, "identity") != 0) {
            *why_p = "compressed request bodies are not supported";
            return 415;
        } else if (strcasecmp(n, "Connection") == 0) {
            conn = v;
        } else if (strcasecmp(n, "Expect") == 0) {
            if (strcasecmp(v, "100-continue") != 0) {
                *why_p = "only Expect: 100-continue is supported";
                return 417;
            }
            h->expect_continue = h->minor == 1;
        }
    }
    if (have_len && have_te) {
        return bt_http_bad(why_p, "both Content-Length and Transfer-Encoding");
    }
    if (have_te && h->minor == 0) {
        return bt_http_bad(why_p, "Transfer-Encoding in an HTTP/1.0 request");
    }
    h->chunked = have_te;
    if (conn != NULL) {
        if (bt_http_has_token(conn, "close")) {
            h->keep_alive = false;
        } else if (bt_http_has_token(conn, "keep-alive")) {
            h->keep_alive = true;
        }
    }
    return 0;
}

int bt_http_head_parse(char *text, size_t len, bt_http_head_t *h,
                       const char **why_p)
{
    char *p = text, *end = text + len, *line;
    int code;

    memset(h, 0, sizeof(*h));
    h->text = text;
    h->minor = 1;   /* until the request line says */
    *why_p = NULL;
    if (memchr(text, '\0', len) != NULL) {
        return bt_http_bad(why_p, "NUL byte in the request head");
    }
    line = bt_http_line(&p, end);
    if (line == NULL) {
        return bt_http_bad(why_p, "malformed request line");
    }
    code = bt_http_request_line(line, h, why_p);
    if (code != 0) {
        return code;
    }
    while ((line = bt_http_line(&p, end)) != NULL && line[0] != '\0') {
        code = bt_http_header_line(line, h, why_p);
        if (code != 0) {
            return code;
        }
    }
    if (line == NULL) {
        return bt_http_bad(why_p, "the request head has no end");
    }
    return bt_http_framing(h, why_p);
}
