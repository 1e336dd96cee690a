/* Forked choices (n > 1) on the decode node: the stem, a fork of one
 * prompt's KV that the node keeps for the other choices of a request once
 * the KV arrived, and the admission of those choices onto it
 * (docs/internals/node.md "Decode: forked choices").
 *
 * The request that gets the prefill says how many choices will fork it
 * (DecodeRequest.fork_count); each of those opens its own DecodeStream
 * naming that request's lease (fork_lease_id) and reserves only the
 * blocks of its own output, plus the partial block it copies on write.
 * When the KV arrives the stem takes a reference on every prompt block
 * (bt_kvseq_fork); each choice forks the stem without the prompt's last
 * token, so its first step computes that token again on the shared KV
 * and samples the choice's first token from the same logits the prefill
 * had, with its own seed. */
#include "decode_int.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bt_dstem {
    bt_list_t     link;        /* in bt_decode_t.stems */
    bt_decode_t  *dec;
    uint64_t      lease_id;    /* of the request that got the prefill */
    bt_dreq_t    *owner;       /* that request while its KV is on the way */
    uint8_t       root[BT_KV_HASH_LEN];
    int32_t      *prompt;      /* [n_prompt]: a fork must name the same */
    uint32_t      n_prompt;
    bt_kvseq_t   *seq;         /* the prompt's KV once it arrived */
    uint32_t      forks_left;  /* choices that did not come yet */
    struct event *ev;          /* ends a stem whose choices never came */
};

static void bt_dstem_free(bt_dstem_t *st)
{
    bt_node_t *node = st->dec->node;

    if (st->owner != NULL) {
        st->owner->stem = NULL;
    }
    bt_list_del(&st->link);
    bt_kvseq_destroy(st->seq);
    if (st->ev != NULL) {
        event_free(st->ev);
    }
    free(st->prompt);
    free(st);
    bt_node_metrics_update(node);
}

/* Every choice still waiting for this stem's KV ends with `code`. */
static void bt_dstem_fail_waiting(bt_dstem_t *st, bt_rpc_code_t code,
                                  const char *msg)
{
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &st->dec->reqs) {
        bt_dreq_t *r = BT_CONTAINER_OF(it, bt_dreq_t, link);

        if (r->fork_of == st->lease_id && r->state == BT_DREQ_LEASED) {
            bt_dreq_fail(r, code, msg);
        }
    }
}

static void bt_dstem_expire_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_dstem_t *st = arg;

    (void)fd;
    (void)what;
    bt_info("kv stem of lease %llu: %u choices never came; its blocks go back",
            (unsigned long long)st->lease_id, st->forks_left);
    bt_dstem_free(st);
}

bt_status_t bt_dstem_open(bt_dreq_t *r, uint32_t fork_count)
{
    bt_dstem_t *st = calloc(1, sizeof(*st));

    if (st == NULL ||
        (st->prompt = malloc(r->n_prompt * sizeof(int32_t))) == NULL ||
        (st->ev = evtimer_new(r->node->base, bt_dstem_expire_cb, st)) == NULL) {
        if (st != NULL) {
            free(st->prompt);
        }
        free(st);
        return BT_ERR_NO_MEMORY;
    }
    st->dec = r->dec;
    st->lease_id = r->lease_id;
    st->owner = r;
    memcpy(st->root, r->root, BT_KV_HASH_LEN);
    memcpy(st->prompt, r->prompt, r->n_prompt * sizeof(int32_t));
    st->n_prompt = r->n_prompt;
    st->forks_left = fork_count;
    bt_list_add_tail(&r->dec->stems, &st->link);
    r->stem = st;
    return BT_OK;
}

/* The choice gets its own sequence over the prompt but its last token
 * and runs: its first step computes that token on the shared blocks. */
static void bt_dstem_attach(bt_dstem_t *st, bt_dreq_t *r)
{
    if (bt_kvseq_fork(st->seq, st->n_prompt - 1, &r->seq) != BT_OK) {
        bt_dreq_fail(r, BT_RPC_INTERNAL, "cannot fork the prompt's kv cache");
        return;
    }
    event_del(r->lease_ev);
    bt_dreq_to(r, BT_DREQ_RUNNING);
    BT_LOG_REQ(DEBUG, r->id, "forked the kv cache of lease %llu (%u prompt "
               "tokens)", (unsigned long long)st->lease_id, st->n_prompt);
}

void bt_dstem_ready(bt_dreq_t *r)
{
    bt_dstem_t *st = r->stem;
    bt_node_t *node = r->node;
    bt_list_t *it, *next;

    st->owner = NULL;
    r->stem = NULL;
    if (bt_kvseq_fork(r->seq, st->n_prompt, &st->seq) != BT_OK) {
        bt_dstem_fail_waiting(st, BT_RPC_FAILED_PRECONDITION,
                              "cannot keep the prompt's kv cache to fork");
        bt_dstem_free(st);
        return;
    }
    bt_list_foreach_safe(it, next, &st->dec->reqs) {
        bt_dreq_t *f = BT_CONTAINER_OF(it, bt_dreq_t, link);

        if (f->fork_of == st->lease_id && f->state == BT_DREQ_LEASED) {
            bt_dstem_attach(st, f);
        }
    }
    if (st->forks_left == 0) {
        bt_dstem_free(st);
    } else {
        bt_node_timer_arm(st->ev, (uint64_t)node->cfg.lease_default_ms);
    }
}

void bt_dstem_owner_lost(bt_dreq_t *r)
{
    bt_dstem_t *st = r->stem;

    bt_dstem_fail_waiting(st, BT_RPC_FAILED_PRECONDITION,
                          "the prompt's kv cache to fork never arrived");
    bt_dstem_free(st);
}

bt_rpc_code_t bt_dstem_join(bt_dreq_t *r, uint64_t lease_id, char *why,
                            size_t why_size)
{
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &r->dec->stems) {
        bt_dstem_t *st = BT_CONTAINER_OF(it, bt_dstem_t, link);

        if (st->lease_id != lease_id) {
            continue;
        }
        /* the same tenant and prompt, or it is not this prompt's KV */
        if (st->forks_left == 0 || st->n_prompt != r->n_prompt ||
            memcmp(st->root, r->root, BT_KV_HASH_LEN) != 0 ||
            memcmp(st->prompt, r->prompt, r->n_prompt * sizeof(int32_t)) != 0) {
            break;
        }
        st->forks_left--;
        r->fork_of = lease_id;
        return BT_RPC_OK;
    }
    snprintf(why, why_size, "no prompt kv cache to fork for lease %llu",
             (unsigned long long)lease_id);
    return BT_RPC_FAILED_PRECONDITION;
}

void bt_dstem_try_attach(bt_dreq_t *r)
{
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &r->dec->stems) {
        bt_dstem_t *st = BT_CONTAINER_OF(it, bt_dstem_t, link);

        if (st->lease_id != r->fork_of || st->seq == NULL) {
            continue;
        }
        bt_dstem_attach(st, r);
        if (st->forks_left == 0) {
            bt_dstem_free(st);
        }
        bt_node_sched_kick(r->node);
        return;
    }
    /* not arrived yet: bt_dstem_ready attaches it */
}

void bt_dstem_free_all(bt_decode_t *dec)
{
    while (!bt_list_empty(&dec->stems)) {
        bt_dstem_free(BT_CONTAINER_OF(dec->stems.next, bt_dstem_t, link));
    }
}
