/*
 * bounds.order_bound_work with bounds.PairTable.lower, compiled (searchcore.SetBounds).
 *
 * A transcription of the Python functions, step for step: the same placed sets in the same
 * order (the steps of a placed set sorted by (cheap bound, index in the set)), the same
 * flows skipped, the same early stop at ``above``, so the same bound and the same count of
 * placed sets (tests/test_searchcore.py compares them). It saves the Python around the
 * flows (the loop over placed sets, the masks, the cheap bounds, the dictionaries that
 * remember flows) and most flows themselves: a constrained bound whose looser key (the same
 * op and set without one of the other ops) has a minimising closure that already meets the
 * extra op's constraint is that key's bound (sb_from_looser), and a looser key's bound at
 * least the best continuation found so far spares the flow of a step that cannot lower it.
 * 80-node RandWire stage, the set bounds of scheduler._pair_floor alone: the 28-tensor
 * bound after 7.9 s in Python, 5.7 s in C without looser keys, 3.0 s with them as equal
 * bounds, 2.2-2.4 s with them as lower bounds too (the same sets, 6,608 of them); 1.5 s
 * with flow_max's shallower breadth-first searches (docs/set_bounds.md).
 *
 * One object per candidate list (scheduler._pair_floor): per candidate its compiled
 * closure flow (searchcore.flow), ancestors and descendants; the cheap bounds (the
 * candidate's bound with one other candidate forced before or after it) and every flow's
 * bound are remembered for all the sets asked of it, as PairTable and FlowClosure do.
 */
#include "_searchcore.h"

#include <stdlib.h>
#include <string.h>

#define SB_INF ((int64_t)1 << 60)  /* bounds.INF */
#define SB_UNKNOWN INT64_MIN
#define SB_MAX_OPS 24  /* placed sets are indexed by a bitmask: 2^24 entries at most */

typedef struct {
    int nc, W;
    PyObject **caps;      /* per candidate: its flow's capsule (a reference held), or NULL */
    Flow **flow;          /* ... and its flow (set_bounds_flow) */
    int32_t *op;          /* per candidate: its op */
    u64 *down, *up;       /* per candidate, W words each: ancestors and it, descendants and it */
    int64_t *root;        /* per candidate: its unconstrained bound (PairTable's root) */
    int64_t *pair;        /* nc * nc * 2: bound of x with y before (0) or after (1) it */
    u64 *keys;            /* flow memo: per slot 1 + 2W words (candidate + 1, in, out) */
    int64_t *vals;
    u64 *mins;            /* per slot 2W words: a least and a largest minimising closure */
    size_t slots, used;
    size_t memo_bytes;    /* the flow memo's most bytes: past them it starts again */
    u64 *scratch;         /* 1 + 4W words: a key being looked up, then a flow's closures */
} SetBounds;

static void sb_free(SetBounds *b) {
    if (!b)
        return;
    if (b->caps)
        for (int c = 0; c < b->nc; c++)
            Py_XDECREF(b->caps[c]);
    free(b->caps); free(b->flow); free(b->op); free(b->down); free(b->up); free(b->root);
    free(b->pair); free(b->keys); free(b->vals); free(b->mins); free(b->scratch);
    free(b);
}

static void sb_capsule_free(PyObject *cap) {
    sb_free((SetBounds *)PyCapsule_GetPointer(cap, "searchcore.SetBounds"));
}

/* The memo slot of key (1 + 2W words; word 0 is never 0 in a used slot). */
static size_t sb_slot(const SetBounds *b, const u64 *key) {
    const int K = 1 + 2 * b->W;
    size_t i = (size_t)hash_bits(key, K) & (b->slots - 1);
    while (b->keys[i * K] && memcmp(b->keys + i * K, key, (size_t)K * 8))
        i = (i + 1) & (b->slots - 1);
    return i;
}

/* Doubles the memo (or, past memo_bytes, empties it: the values are only remembered). */
static int sb_grow(SetBounds *b) {
    const int W = b->W, K = 1 + 2 * W;
    u64 *old_keys = b->keys, *old_mins = b->mins;
    int64_t *old_vals = b->vals;
    size_t old = b->slots;
    b->slots = old ? 2 * old : 1024;
    if (old && b->slots * (size_t)(K + 2 * W + 1) * 8 > b->memo_bytes) {
        b->slots = old;
        memset(b->keys, 0, old * K * 8);
        b->used = 0;
        return 0;
    }
    b->keys = calloc(b->slots * K, 8);
    b->vals = malloc(b->slots * 8);
    b->mins = malloc(b->slots * 2 * W * 8);
    if (!b->keys || !b->vals || !b->mins) {
        free(b->keys); free(b->vals); free(b->mins);
        b->keys = old_keys; b->vals = old_vals; b->mins = old_mins; b->slots = old;
        return -1;
    }
    for (size_t j = 0; j < old; j++) {
        if (!old_keys[j * K])
            continue;
        size_t i = sb_slot(b, old_keys + j * K);
        memcpy(b->keys + i * K, old_keys + j * K, (size_t)K * 8);
        memcpy(b->mins + i * 2 * W, old_mins + j * 2 * W, (size_t)W * 16);
        b->vals[i] = old_vals[j];
    }
    free(old_keys); free(old_vals); free(old_mins);
    return 0;
}

/* After c's maximum flow under forced-in fin: a least (mins) and a largest (mins + W)
 * closure of least cost, as op sets. The least: the forced ops, c's ancestors and the op
 * nodes the source reaches in the residual graph; the largest: every op but c, its
 * descendants and the op nodes that reach the sink in it. Both are downsets (the infinite
 * predecessor arcs never saturate), and every closure of least cost lies between them. */
static void sb_closures(const SetBounds *b, int c, Flow *f, const u64 *fin, u64 *mins) {
    const int W = b->W;
    int32_t *seen = f->level, *q = f->queue;
    u64 *least = mins, *largest = mins + W;
    const u64 *down = b->down + (size_t)c * W, *up = b->up + (size_t)c * W;
    for (int from = 0; from < 2; from++) {  /* 0: forward from the source, 1: to the sink */
        for (int a = 0; a < f->nn; a++)
            seen[a] = f->dead[a];
        int qh = 0, qt = 0;
        seen[from] = 1;
        q[qt++] = from;
        while (qh < qt) {
            int y = q[qh++];
            for (int k = f->adj_ptr[y]; k < f->adj_ptr[y + 1]; k++) {
                int e = f->adj[k], x = f->head[e];
                if (!seen[x] && f->cap[from ? e ^ 1 : e] > 0) {
                    seen[x] = 1;
                    q[qt++] = x;
                }
            }
        }
        u64 *m = from ? largest : least;
        for (int w = 0; w < W; w++)
            m[w] = from ? ~up[w] : (fin[w] | down[w]) & ~up[w];  /* down holds c itself */
        for (int k = 0; k < f->nf; k++) {
            int node = f->head[2 * f->f_arc[k]], op = f->f_op[k];
            if (f->dead[node] || !seen[node] || op >= W * 64)
                continue;
            if (from)
                m[op >> 6] &= ~((u64)1 << (op & 63));
            else
                m[op >> 6] |= (u64)1 << (op & 63);
        }
    }
}

/* Whether c can run in a state holding fin and none of fout (else FlowClosure.bound's INF). */
static int sb_feasible(const SetBounds *b, int c, const u64 *fin, const u64 *fout) {
    const int W = b->W, own = b->op[c];
    const u64 *down = b->down + (size_t)c * W, *up = b->up + (size_t)c * W;
    for (int w = 0; w < W; w++) {
        u64 self = (own >> 6) == w ? (u64)1 << (own & 63) : 0;
        if ((fin[w] | (down[w] & ~self)) & (fout[w] | up[w]))
            return 0;  /* v's ancestors in, v and its descendants out: no such state */
    }
    return 1;
}

/* The memo key of (c, fin, fout), written to scratch (what sb_store remembers under). */
static void sb_key(SetBounds *b, int c, const u64 *fin, const u64 *fout) {
    const int W = b->W;
    u64 *key = b->scratch;
    key[0] = (u64)c + 1;
    memcpy(key + 1, fin, (size_t)W * 8);
    memcpy(key + 1 + W, fout, (size_t)W * 8);
}

/* The memo slot of (c, fin, fout) (free if not remembered); the key is left in scratch. */
static size_t sb_find(SetBounds *b, int c, const u64 *fin, const u64 *fout) {
    sb_key(b, c, fin, fout);
    return sb_slot(b, b->scratch);
}

/* Remembers value (and its least and largest minimising closures) for the key in scratch;
 * -1 when out of memory. */
static int sb_store(SetBounds *b, int64_t value, const u64 *mins) {
    const int W = b->W, K = 1 + 2 * W;
    if (2 * (b->used + 1) > b->slots && sb_grow(b) < 0)
        return -1;
    size_t i = sb_slot(b, b->scratch);
    if (!b->keys[i * K]) {
        memcpy(b->keys + i * K, b->scratch, (size_t)K * 8);
        b->used++;
    }
    b->vals[i] = value;
    memcpy(b->mins + i * 2 * W, mins, (size_t)W * 16);
    return 0;
}

/* c's bound under (fin, fout) by one flow (c can run there and the key is not
 * remembered), then remembered; SB_UNKNOWN when out of memory. */
static int64_t sb_flow(SetBounds *b, int c, const u64 *fin, const u64 *fout) {
    const int W = b->W, K = 1 + 2 * W;
    Flow *f = b->flow[c];
    int64_t value = flow_value(f, fin, fout, W * 64);
    int64_t got = value >= f->big ? SB_INF : f->base - (f->gain - value);
    u64 *mins = b->scratch + K;
    if (got == SB_INF)
        memset(mins, 0xFF, (size_t)W * 16);  /* no closure: a tighter key is INF as well */
    else
        sb_closures(b, c, f, fin, mins);
    sb_key(b, c, fin, fout);
    return sb_store(b, got, mins) < 0 ? SB_UNKNOWN : got;
}

/* searchcore.FlowClosure.bound(fin, fout) of candidate c: remembered, or one flow;
 * SB_UNKNOWN when out of memory. */
static int64_t sb_bound(SetBounds *b, int c, const u64 *fin, const u64 *fout) {
    const int K = 1 + 2 * b->W;
    if (!sb_feasible(b, c, fin, fout))
        return SB_INF;
    size_t i = sb_find(b, c, fin, fout);
    return b->keys[i * K] ? b->vals[i] : sb_flow(b, c, fin, fout);
}

/* c's bound under (fin, fout) from a remembered looser key, without a flow, or
 * SB_UNKNOWN: the key (pfin, pfout) with pfin within fin and pfout within fout has
 * fewer constraints, so its least cost is no higher; when one of its minimising closures
 * also holds ``extra_in`` and none of ``extra_out`` (what fin and fout add), it meets the
 * tighter key's constraints, and the two least costs are equal. ``mins``: that closure,
 * twice (the tighter key's least and largest closures to remember). Either way the looser
 * key's bound, a lower bound on the tighter one's, raises ``*lower``. */
static int64_t sb_from_looser(SetBounds *b, int c, const u64 *pfin, const u64 *pfout,
                              const u64 *extra_in, const u64 *extra_out, u64 *mins,
                              int64_t *lower) {
    const int W = b->W, K = 1 + 2 * W;
    size_t i = sb_find(b, c, pfin, pfout);
    if (!b->keys[i * K])
        return SB_UNKNOWN;
    if (b->vals[i] == SB_INF)
        return SB_INF;
    if (b->vals[i] > *lower)
        *lower = b->vals[i];
    for (int side = 0; side < 2; side++) {
        const u64 *m = b->mins + i * 2 * W + side * W;
        int fits = 1;
        for (int w = 0; w < W && fits; w++)
            fits = !(extra_in[w] & ~m[w]) && !(extra_out[w] & m[w]);
        if (fits) {  /* the other one may not meet the tighter key's constraints */
            memcpy(mins, m, (size_t)W * 8);
            memcpy(mins + W, m, (size_t)W * 8);
            return b->vals[i];
        }
    }
    return SB_UNKNOWN;
}

/* PairTable._forced: c's bound with candidate y forced before it (after = 0) or after. */
static int64_t sb_forced(SetBounds *b, int c, int y, int after, u64 *zero) {
    int64_t *slot = b->pair + ((size_t)c * b->nc + y) * 2 + after;
    if (*slot == SB_UNKNOWN) {
        const u64 *m = (after ? b->up : b->down) + (size_t)y * b->W;
        int64_t got = after ? sb_bound(b, c, zero, m) : sb_bound(b, c, m, zero);
        if (got == SB_UNKNOWN)
            return SB_UNKNOWN;
        *slot = got;
    }
    return *slot;
}

/* One order_bound_work call: k candidates, their placed-set memo and per-depth masks. */
typedef struct {
    SetBounds *b;
    int k;
    const int32_t *ci;    /* the set's candidates */
    uint32_t *below;      /* per i: the set's ops that are ancestors of its op i */
    int64_t *memo;        /* 2^k: value(placed), SB_UNKNOWN until computed */
    int64_t above, work;
    u64 *masks;           /* per depth: fin, fout (W words each) */
    u64 *zero;            /* W zero words */
    u64 *tmp;             /* 4W words: a looser key's masks, then its closures */
    int64_t *low;         /* per depth: k cheap bounds */
    int32_t *idx;         /* per depth: k step indices */
    int failed;           /* out of memory */
    int last;             /* the other op whose looser key gave the last bound */
} Call;

/* PairTable.lower(x, before, after) for the set's op i (masks over the set). */
static int64_t sb_lower(Call *s, int i, uint32_t before, uint32_t after) {
    SetBounds *b = s->b;
    int c = s->ci[i];
    int64_t best = b->root[c];
    for (int j = 0; j < s->k; j++) {
        if (!(((before | after) >> j) & 1))
            continue;
        int64_t got = sb_forced(b, c, s->ci[j], (int)((after >> j) & 1), s->zero);
        if (got == SB_UNKNOWN) {
            s->failed = 1;
            return SB_INF;
        }
        if (got > best)
            best = got;
    }
    return best;
}

/* sb_bound for the set's op i (placed: the set's ops before it, after: those after it),
 * first from the keys of the sets without one of the other ops (the set grown by one op
 * of scheduler._pair_floor's sets asks for them first): without that op's constraint.
 * When those keys show it is at least ``best`` (the caller's best continuation), that
 * lower bound is returned instead: the caller skips such a step whatever its bound. */
static int64_t sb_bound_in_set(Call *s, int i, uint32_t placed, uint32_t after,
                               const u64 *fin, const u64 *fout, int64_t best) {
    SetBounds *b = s->b;
    const int W = b->W, K = 1 + 2 * W, c = s->ci[i];
    if (!sb_feasible(b, c, fin, fout))
        return SB_INF;
    size_t at = sb_find(b, c, fin, fout);
    if (b->keys[at * K])
        return b->vals[at];
    u64 *pfin = s->tmp, *pfout = s->tmp + W, *mins = s->tmp + 2 * W;
    int64_t lower = SB_UNKNOWN;  /* the largest looser key's bound seen */
    for (int t = -1; t < s->k; t++) {  /* the op that served last first: mostly the newest */
        const int j = t < 0 ? s->last : t;
        if (t >= 0 && j == s->last)
            continue;
        uint32_t mj = (uint32_t)1 << j;
        if (j == i || !((placed | after) & mj))
            continue;
        const uint32_t rest = (placed & mj) ? placed & ~mj : after & ~mj;
        const u64 *masks = (placed & mj) ? b->down : b->up;
        u64 *loose = (placed & mj) ? pfin : pfout;
        memcpy(pfin, fin, (size_t)W * 8);
        memcpy(pfout, fout, (size_t)W * 8);
        memset(loose, 0, (size_t)W * 8);
        for (int q = 0; q < s->k; q++)
            if ((rest >> q) & 1)
                for (int w = 0; w < W; w++)
                    loose[w] |= masks[(size_t)s->ci[q] * W + w];
        const u64 *mine = masks + (size_t)s->ci[j] * W;
        int64_t got = (placed & mj)
            ? sb_from_looser(b, c, pfin, pfout, mine, s->zero, mins, &lower)
            : sb_from_looser(b, c, pfin, pfout, s->zero, mine, mins, &lower);
        if (got != SB_UNKNOWN) {
            s->last = j;
            sb_key(b, c, fin, fout);  /* the key back in scratch */
            return sb_store(b, got, mins) < 0 ? SB_UNKNOWN : got;
        }
    }
    if (lower >= best)
        return lower;  /* it cannot lower the caller's best: no flow (and not remembered) */
    return sb_flow(b, c, fin, fout);
}

/* order_bound_work's value(placed). */
static int64_t sb_value(Call *s, uint32_t placed, int depth) {
    if (s->memo[placed] != SB_UNKNOWN)
        return s->memo[placed];
    SetBounds *b = s->b;
    const int k = s->k, W = b->W;
    const uint32_t full = ((uint32_t)1 << k) - 1;  /* k <= SB_MAX_OPS < 32 */
    u64 *fin = s->masks + (size_t)depth * 2 * W, *fout = fin + W;
    int64_t *low = s->low + (size_t)depth * k;
    int32_t *idx = s->idx + (size_t)depth * k;
    memset(fin, 0, (size_t)W * 8);
    for (int j = 0; j < k; j++)
        if ((placed >> j) & 1)
            for (int w = 0; w < W; w++)
                fin[w] |= b->down[(size_t)s->ci[j] * W + w];
    int n = 0;
    for (int i = 0; i < k; i++) {
        if (((placed >> i) & 1) || (s->below[i] & ~placed))
            continue;
        uint32_t after = full & ~placed & ~((uint32_t)1 << i);
        int64_t here = sb_lower(s, i, placed, after);
        int at = n++;  /* insertion by (cheap bound, index): Python's sorted(steps) */
        while (at > 0 && low[at - 1] > here) {
            low[at] = low[at - 1];
            idx[at] = idx[at - 1];
            at--;
        }
        low[at] = here;
        idx[at] = i;
    }
    int64_t best = SB_INF;
    for (int t = 0; t < n && !s->failed; t++) {
        int64_t here = low[t];
        int i = idx[t];
        if (here >= best)
            break;
        uint32_t after = full & ~placed & ~((uint32_t)1 << i);
        memset(fout, 0, (size_t)W * 8);
        for (int j = 0; j < k; j++)
            if ((after >> j) & 1)
                for (int w = 0; w < W; w++)
                    fout[w] |= b->up[(size_t)s->ci[j] * W + w];
        here = sb_bound_in_set(s, i, placed, after, fin, fout, best);
        if (here == SB_UNKNOWN) {
            s->failed = 1;
            break;
        }
        if (here >= best)
            continue;
        int64_t rest = sb_value(s, placed | ((uint32_t)1 << i), depth + 1);
        if ((here > rest ? here : rest) < best)
            best = here > rest ? here : rest;
        if (best <= s->above)
            break;
    }
    s->memo[placed] = best;
    s->work++;
    return best;
}

static int sb_parse_words(PyObject *obj, Py_ssize_t want, u64 **out, const char *name) {
    Py_buffer v;
    if (PyObject_GetBuffer(obj, &v, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (v.len != want * 8) {
        PyErr_Format(PyExc_ValueError, "searchcore: %s has %zd bytes, not %zd", name, v.len,
                     want * 8);
        PyBuffer_Release(&v);
        return -1;
    }
    *out = malloc((size_t)(want ? want : 1) * 8);
    if (*out)
        memcpy(*out, v.buf, (size_t)want * 8);
    PyBuffer_Release(&v);
    return *out ? 0 : (PyErr_NoMemory(), -1);
}

PyObject *make_set_bounds(PyObject *self, PyObject *args) {
    PyObject *oops, *odown, *oup, *oroot;
    int nc, W;
    unsigned long long memo_bytes;
    if (!PyArg_ParseTuple(args, "iOOOOiK", &nc, &oops, &odown, &oup, &oroot, &W, &memo_bytes))
        return NULL;
    if (nc < 0) {
        PyErr_SetString(PyExc_ValueError, "searchcore: a negative number of candidates");
        return NULL;
    }
    SetBounds *b = calloc(1, sizeof(SetBounds));
    if (!b)
        return PyErr_NoMemory();
    b->nc = nc;
    b->W = W;
    b->memo_bytes = (size_t)memo_bytes;
    u64 *ops = NULL, *root = NULL;
    b->caps = calloc((size_t)nc + 1, sizeof(PyObject *));
    b->flow = calloc((size_t)nc + 1, sizeof(Flow *));
    b->op = malloc(((size_t)nc + 1) * 4);
    b->pair = malloc(((size_t)nc * nc * 2 + 1) * 8);
    b->scratch = malloc(((size_t)4 * W + 1) * 8);
    if (!b->caps || !b->flow || !b->op || !b->pair || !b->scratch) {
        PyErr_NoMemory();
        goto fail;
    }
    if (W < 1 || sb_parse_words(oops, nc, &ops, "ops") < 0
        || sb_parse_words(odown, (Py_ssize_t)nc * W, &b->down, "down") < 0
        || sb_parse_words(oup, (Py_ssize_t)nc * W, &b->up, "up") < 0
        || sb_parse_words(oroot, nc, &root, "root") < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "searchcore: W must be positive");
        goto fail;
    }
    b->root = (int64_t *)root;
    root = NULL;
    for (int c = 0; c < nc; c++) {
        if (ops[c] >= (u64)W * 64) {
            PyErr_SetString(PyExc_ValueError, "searchcore: an op beyond W words");
            goto fail;
        }
        b->op[c] = (int32_t)ops[c];
    }
    for (size_t j = 0; j < (size_t)nc * nc * 2; j++)
        b->pair[j] = SB_UNKNOWN;
    if (sb_grow(b) < 0) {
        PyErr_NoMemory();
        goto fail;
    }
    free(ops);
    return PyCapsule_New(b, "searchcore.SetBounds", sb_capsule_free);
fail:
    free(ops); free(root);
    sb_free(b);
    return NULL;
}

/* set_bounds_flow(set_bounds, c, flow): candidate c's closure flow (made when first needed:
 * building a network costs more than many bounds). */
PyObject *set_bounds_flow(PyObject *self, PyObject *args) {
    PyObject *cap, *oflow;
    int c;
    if (!PyArg_ParseTuple(args, "OiO", &cap, &c, &oflow))
        return NULL;
    SetBounds *b = PyCapsule_GetPointer(cap, "searchcore.SetBounds");
    Flow *f = b ? PyCapsule_GetPointer(oflow, "searchcore.Flow") : NULL;
    if (!f)
        return NULL;
    if (c < 0 || c >= b->nc) {
        PyErr_SetString(PyExc_ValueError, "searchcore: no such candidate");
        return NULL;
    }
    Py_INCREF(oflow);
    Py_XDECREF(b->caps[c]);
    b->caps[c] = oflow;
    b->flow[c] = f;
    Py_RETURN_NONE;
}

PyObject *set_bound(PyObject *self, PyObject *args) {
    PyObject *cap, *oidx;
    long long above;
    if (!PyArg_ParseTuple(args, "OOL", &cap, &oidx, &above))
        return NULL;
    SetBounds *b = PyCapsule_GetPointer(cap, "searchcore.SetBounds");
    if (!b)
        return NULL;
    Py_buffer v;
    if (PyObject_GetBuffer(oidx, &v, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    int k = (int)(v.len / 4);
    int32_t ci[SB_MAX_OPS];
    if (k < 1 || k > SB_MAX_OPS || v.len != (Py_ssize_t)k * 4) {
        PyBuffer_Release(&v);
        PyErr_Format(PyExc_ValueError, "searchcore: a set of 1 to %d candidates", SB_MAX_OPS);
        return NULL;
    }
    memcpy(ci, v.buf, (size_t)k * 4);
    PyBuffer_Release(&v);
    for (int i = 0; i < k; i++)
        if (ci[i] < 0 || ci[i] >= b->nc || !b->flow[ci[i]]) {
            PyErr_SetString(PyExc_ValueError, "searchcore: no such candidate, or no flow yet");
            return NULL;
        }
    const int W = b->W;
    Call s = {.b = b, .k = k, .ci = ci, .above = above};
    uint32_t below[SB_MAX_OPS];
    for (int i = 0; i < k; i++) {
        below[i] = 0;
        const u64 *down = b->down + (size_t)ci[i] * W;
        for (int j = 0; j < k; j++) {
            int op = b->op[ci[j]];
            if (j != i && ((down[op >> 6] >> (op & 63)) & 1))
                below[i] |= (uint32_t)1 << j;
        }
    }
    s.below = below;
    size_t nmemo = (size_t)1 << k;
    s.memo = malloc(nmemo * 8);
    s.masks = malloc(((size_t)k + 1) * 2 * W * 8);
    s.zero = calloc((size_t)W, 8);
    s.tmp = malloc((size_t)W * 4 * 8);
    s.low = malloc(((size_t)k + 1) * k * 8);
    s.idx = malloc(((size_t)k + 1) * k * 4);
    PyObject *result = NULL;
    if (!s.memo || !s.masks || !s.zero || !s.tmp || !s.low || !s.idx) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t j = 0; j < nmemo; j++)
        s.memo[j] = SB_UNKNOWN;
    s.memo[nmemo - 1] = 0;
    s.work = 1;
    int64_t got = sb_value(&s, 0, 0);
    if (s.failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_BuildValue("(LL)", (long long)got, (long long)s.work);
done:
    free(s.memo); free(s.masks); free(s.zero); free(s.tmp); free(s.low); free(s.idx);
    return result;
}
