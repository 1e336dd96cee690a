/* The simulator's event heap (event.h). */
#include "event.h"

#include <stdlib.h>
#include <string.h>

void bt_sim_evq_init(bt_sim_evq_t *q)
{
    memset(q, 0, sizeof(*q));
}

void bt_sim_evq_free(bt_sim_evq_t *q)
{
    free(q->heap);
    memset(q, 0, sizeof(*q));
}

static bool ev_before(const bt_sim_ev_t *x, const bt_sim_ev_t *y)
{
    return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

bool bt_sim_evq_push(bt_sim_evq_t *q, double t, int kind, uint32_t a,
                     uint64_t b)
{
    bt_sim_ev_t ev = {t < q->now ? q->now : t, q->next_seq++, kind, a, b};
    size_t i;

    if (q->n == q->cap) {
        size_t cap = q->cap > 0 ? q->cap * 2 : 1024;
        bt_sim_ev_t *h = realloc(q->heap, cap * sizeof(*h));

        if (h == NULL) {
            return false;
        }
        q->heap = h;
        q->cap = cap;
    }
    for (i = q->n++; i > 0; i = (i - 1) / 2) {
        bt_sim_ev_t *parent = &q->heap[(i - 1) / 2];

        if (!ev_before(&ev, parent)) {
            break;
        }
        q->heap[i] = *parent;
    }
    q->heap[i] = ev;
    return true;
}

bool bt_sim_evq_pop(bt_sim_evq_t *q, bt_sim_ev_t *ev)
{
    bt_sim_ev_t last;
    size_t i = 0;

    if (q->n == 0) {
        return false;
    }
    *ev = q->heap[0];
    last = q->heap[--q->n];
    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= q->n) {
            break;
        }
        if (c + 1 < q->n && ev_before(&q->heap[c + 1], &q->heap[c])) {
            c++;
        }
        if (!ev_before(&q->heap[c], &last)) {
            break;
        }
        q->heap[i] = q->heap[c];
        i = c;
    }
    if (q->n > 0) {
        q->heap[i] = last;
    }
    q->now = ev->t;
    q->popped++;
    return true;
}
