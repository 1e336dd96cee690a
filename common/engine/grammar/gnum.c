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

/* The value a prefix's digits t stand for, at P = 10^(fraction digits):
 * the correctly rounded double a JSON parser reads (t and P are exact). */
static double bt_gnum_val(bool neg, double t, double P)
{
    return neg ? -(t / P) : t / P;
}

static bool bt_gnum_ok(const bt_gnode_t *n, bool neg, double t, double P,
                       bool want_lo)
{
    double x = bt_gnum_val(neg, t, P);

    return want_lo ? bt_gnum_ge_lo(n, x) : bt_gnum_le_hi(n, x);
}

/* Some integer t in [lo_t, hi_t] whose value (+-t / P) is in range. Only
 * values with the digits left can be written, so this is a search on
 * that grid, not on the reals between: 0.7777770000314 can still reach
 * above 0.77777700003149881 with one digit more, not with none. The
 * value is monotone in t: find the smallest t that passes the bound on
 * the side t grows towards, then check the other bound there. */
static bool bt_gnum_grid_hit(const bt_gnode_t *n, bool neg, double lo_t,
                             double hi_t, double P)
{
    /* growing t raises the value when positive: then lo is the bound to
     * reach and hi the one to keep, and the other way round */
    bool reach_lo = !neg;
    double lo = lo_t, hi = hi_t;

    if (lo_t > hi_t || !bt_gnum_ok(n, neg, hi_t, P, reach_lo)) {
        return false;
    }
    if (!bt_gnum_ok(n, neg, lo_t, P, reach_lo)) {
        /* ok(lo) false, ok(hi) true: bisect on exact integers */
        while (hi - lo > 1) {
            double mid = floor(lo + (hi - lo) / 2);

            if (bt_gnum_ok(n, neg, mid, P, reach_lo)) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        lo = hi;
    }
    return bt_gnum_ok(n, neg, lo, P, !reach_lo);
}

/* Values with magnitudes in [A, B) written with `frac` fraction digits at
 * most (0: integers A..B-1), negated when `neg`. */
static bool bt_gnum_mag_hit(const bt_gnode_t *n, bool neg, double A, double B,
                            unsigned frac)
{
    double P = bt_gnum_pow10(n->integer ? 0 : frac);

    return bt_gnum_grid_hit(n, neg, A * P, B * P - 1, P);
}

/* Any number at all, from the first character: each count of integer
 * digits, with the fraction digits that leaves. */
static bool bt_gnum_any_hit(const bt_gnode_t *n, bool neg)
{
    for (unsigned i = 1; i <= BT_GNUM_MAX_DIGITS; i++) {
        double B = bt_gnum_pow10(i);

        if (bt_gnum_mag_hit(n, neg, i == 1 ? 0 : B / 10, B,
                            BT_GNUM_MAX_DIGITS - i)) {
            return true;
        }
    }
    return false;
}

bool bt_gnum_in_range(const bt_gnode_t *n, const bt_gframe_t *f)
{
    double x = bt_gnum_val((f->x & BT_GX_NEG) != 0, (double)f->v,
                           bt_gnum_pow10(f->b));

    return bt_gnum_ge_lo(n, x) && bt_gnum_le_hi(n, x);
}

bool bt_gnum_feasible(const bt_gnode_t *n, const bt_gframe_t *f, uint8_t phase)
{
    const bool neg = (f->x & BT_GX_NEG) != 0;
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
        return bt_gnum_any_hit(n, false) || bt_gnum_any_hit(n, true);
    case BT_GP_NUM_SIGN:
        return bt_gnum_any_hit(n, true);
    case BT_GP_NUM_ZERO:
        return bt_gnum_mag_hit(n, neg, 0, 1, BT_GNUM_MAX_DIGITS - f->a);
    case BT_GP_NUM_INT:
        for (unsigned k = 0; f->a + k <= BT_GNUM_MAX_DIGITS; k++) {
            double p = bt_gnum_pow10(k);

            if (bt_gnum_mag_hit(n, neg, m * p, (m + 1) * p,
                                BT_GNUM_MAX_DIGITS - f->a - k)) {
                return true;
            }
        }
        return false;
    case BT_GP_NUM_DOT: {
        /* at least one fraction digit follows; "m.0" is m */
        double p = bt_gnum_pow10(BT_GNUM_MAX_DIGITS - f->a);

        return !n->integer && bt_gnum_grid_hit(n, neg, m * p, (m + 1) * p - 1, p);
    }
    case BT_GP_NUM_FRAC: {
        /* the digits so far (f->b of them after the '.'), then up to the
         * rest: t / 10^(b + k) for t in [m 10^k, (m + 1) 10^k) */
        double p = bt_gnum_pow10(BT_GNUM_MAX_DIGITS - f->a);

        return bt_gnum_grid_hit(n, neg, m * p, (m + 1) * p - 1,
                                bt_gnum_pow10(f->b) * p);
    }
    default:
        return false;
    }
}
