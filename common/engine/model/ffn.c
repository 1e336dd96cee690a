/* The SwiGLU MLP (ffn.h). */
#include "ffn.h"

#include <math.h>
#include <stddef.h>

static void swiglu(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

void bt_ffn_run(const bt_backend_ops_t *ops, void *be,
                const bt_ffn_weights_t *w, const float *in, int n, float *g,
                float *u, float *out)
{
    const int F = w->gate.rows;

    ops->matmul(be, in, n, &w->gate, NULL, g);
    ops->matmul(be, in, n, &w->up, NULL, u);
    swiglu(g, u, (size_t)n * (size_t)F);
    ops->matmul(be, g, n, &w->down, NULL, out);
}
