/* Numbers under minimum/maximum: whether a prefix can still end in range
 * (so the automaton never enters a dead end) and whether it is in range.
 * Numbers have at most BT_GNUM_MAX_DIGITS digits and no exponent, so the
 * magnitude is an exact integer in a double and value = m / 10^b is the
 * correctly rounded double a JSON parser reads. */
#include "grammar_int.h"

#include <math.h>

#define BT_GNUM_MAX_DIGITS 15

static double bt_gnum_pow10(unsigned k)
{
    double p = 1;

    while (k-- > 0) {
        p *= 10;
    }
    return p;
}

static bool bt_gnum_ge_lo(const bt_gnode_t *n, double x)
{
    return !n->has_lo || (n->lo_excl ? x > n->lo : x >= n->lo);
}

static bool bt_gnum_le_hi(const bt_gnode_t *n, double x)
{
    return !n->has_hi || (n->hi_excl ? x < n->hi : x <= n->hi);
}

/* An integer in [a, b] (a <= b) within the range. */
static bool bt_gnum_int_hit(const bt_gnode_t *n, double a, double b)
{
    double lo = a, hi = b;

    if (n->has_lo) {
        double l = n->lo_excl ? floor(n->lo) + 1 : ceil(n->lo);

        lo = l > lo ? l : lo;
    }
    if (n->has_hi) {
        double h = n->hi_excl ? ceil(n->hi) - 1 : floor(n->hi);

        hi = h < hi ? h : hi;
    }
    return lo <= hi;
}

/* Some real in (a, b) within the range: an interval of positive width. */
static bool bt_gnum_real_hit(const bt_gnode_t *n, double a, double b)
{
    double lo = n->has_lo && n->lo > a ? n->lo : a;
    double hi = n->has_hi && n->hi < b ? n->hi : b;

    return lo < hi;
}

/* Values with magnitudes in [A, B): integers A..B-1 and, when `frac`,
 * the reals between; negated when `neg`. */
static bool bt_gnum_mag_hit(const bt_gnode_t *n, bool neg, double A, double B,
                            bool frac)
{
    double a = neg ? -(B - 1) : A, b = neg ? -A : B - 1;

    if (B - 1 >= A && bt_gnum_int_hit(n, a, b)) {
        return true;
    }
    return frac && !n->integer &&
           bt_gnum_real_hit(n, neg ? -B : A, neg ? -A : B);
}

bool bt_gnum_in_range(const bt_gnode_t *n, const bt_gframe_t *f)
{
    double x = (double)f->v / bt_gnum_pow10(f->b);

    if (f->x & BT_GX_NEG) {
        x = -x;
    }
    return bt_gnum_ge_lo(n, x) && bt_gnum_le_hi(n, x);
}

bool bt_gnum_feasible(const bt_gnode_t *n, const bt_gframe_t *f, uint8_t phase)
{
    const bool neg = (f->x & BT_GX_NEG) != 0;
    const double top = bt_gnum_pow10(BT_GNUM_MAX_DIGITS);
    double m = (double)f->v;

    if (f->a > BT_GNUM_MAX_DIGITS ||
        (phase == BT_GP_NUM_DOT && f->a >= BT_GNUM_MAX_DIGITS)) {
        return false;   /* a '.' needs room for a digit after it */
    }
    if (!n->has_lo && !n->has_hi) {
        return true;
    }
    switch (phase) {
    case BT_GP_START:
        return bt_gnum_mag_hit(n, false, 0, top, true) ||
               bt_gnum_mag_hit(n, true, 0, top, true);
    case BT_GP_NUM_SIGN:
        return bt_gnum_mag_hit(n, true, 0, top, true);
    case BT_GP_NUM_ZERO:
        return bt_gnum_mag_hit(n, neg, 0, 1, f->a < BT_GNUM_MAX_DIGITS);
    case BT_GP_NUM_INT:
        for (unsigned k = 0; f->a + k <= BT_GNUM_MAX_DIGITS; k++) {
            double p = bt_gnum_pow10(k);

            if (bt_gnum_mag_hit(n, neg, m * p, (m + 1) * p,
                                f->a + k < BT_GNUM_MAX_DIGITS)) {
                return true;
            }
        }
        return false;
    case BT_GP_NUM_DOT:
        return !n->integer && f->a < BT_GNUM_MAX_DIGITS &&
               bt_gnum_real_hit(n, neg ? -(m + 1) : m, neg ? -m : m + 1);
    case BT_GP_NUM_FRAC: {
        double p = bt_gnum_pow10(f->b);

        if (bt_gnum_in_range(n, f)) {
            return true;
        }
        return f->a < BT_GNUM_MAX_DIGITS &&
               bt_gnum_real_hit(n, neg ? -(m + 1) / p : m / p,
                                neg ? -m / p : (m + 1) / p);
    }
    default:
        return false;
    }
}
