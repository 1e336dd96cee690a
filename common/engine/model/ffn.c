/* The SwiGLU MLP (ffn.h). */
#include "ffn.h"

#include <stddef.h>

void bt_ffn_run(const bt_backend_ops_t *ops, void *be,
                const bt_ffn_weights_t *w, const float *in, int n, float *g,
                float *u, float *out)
{
    const int F = w->gate.rows;

    ops->matmul(be, in, n, &w->gate, NULL, g);
    ops->matmul(be, in, n, &w->up, NULL, u);
    ops->swiglu(be, g, u, (size_t)n * (size_t)F);
    ops->matmul(be, g, n, &w->down, NULL, out);
}
