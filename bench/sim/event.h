/* The simulator's event core: a binary min-heap of timed events. Events
 * at the same time come out in the order they were pushed (a sequence
 * number breaks ties), so a simulation is deterministic. An event is a
 * kind and two payload words; what they mean is the caller's. */
#ifndef BT_SIM_EVENT_H
#define BT_SIM_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    double   t;      /* seconds of simulated time */
    uint64_t seq;    /* push order: the tie-break */
    int      kind;
    uint32_t a;
    uint64_t b;
} bt_sim_ev_t;

typedef struct {
    bt_sim_ev_t *heap;
    size_t       n, cap;
    uint64_t     next_seq;
    double       now;        /* time of the last event popped */
    uint64_t     popped;
} bt_sim_evq_t;

void bt_sim_evq_init(bt_sim_evq_t *q);
void bt_sim_evq_free(bt_sim_evq_t *q);
/* Schedules an event at time t (>= now; an earlier t is taken as now).
 * Returns false when out of memory. */
bool bt_sim_evq_push(bt_sim_evq_t *q, double t, int kind, uint32_t a,
                     uint64_t b);
/* The earliest event into *ev (now advances to its time); false when the
 * queue is empty. */
bool bt_sim_evq_pop(bt_sim_evq_t *q, bt_sim_ev_t *ev);
static inline bool bt_sim_evq_empty(const bt_sim_evq_t *q)
{
    return q->n == 0;
}

#endif
