/* The SwiGLU MLP shared by dense layers, MoE experts and the shared
 * expert: out = down(silu(gate(in)) * up(in)). One definition, so an
 * expert computed on any expert device (experts.h) runs the very same
 * operations as the one-device path. Internal to the model folder. */
#ifndef BT_ENGINE_FFN_H
#define BT_ENGINE_FFN_H

#include "backend.h"

/* out[n][hidden] = FFN_w(in[n][hidden]); g and u are scratch of
 * [n][w->gate.rows] floats each. */
void bt_ffn_run(const bt_backend_ops_t *ops, void *be,
                const bt_ffn_weights_t *w, const float *in, int n, float *g,
                float *u, float *out);

#endif
