/*
 * The compiled hot loop of scheduler.search: best-first bottleneck search over downsets.
 *
 * It is a transcription of the Python loop in scheduler.search, state for state: the same
 * keys (max(peak so far, floor), per-state bounds through a Python callback), the same
 * heap order (key, -depth, resident bytes, state, ready, check; states compared as the
 * integers Python compares), the same free moves, the same stale/closed tests and the same
 * stop rules. So it expands the same states in the same order and returns the same answer;
 * tests/test_searchcore.py compares the two.
 *
 * No memory rule lives here: the step cost of a macro is computed from tables that
 * searchcore.py packs from scheduler.Context (whose in-place and lifetime data come from
 * memory.Problem): per op its base step (outputs + nested bytes), kept outputs, arena inputs
 * with their readers, and per in-place pair the inputs whose death lets the output share.
 *
 * States are bitsets of W 64-bit words (op i = bit i % 64 of word i / 64).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

#include "_searchcore.h"

/* ------------------------------------------------------------------------------------- */
/* Tables (one per scheduler.Context)                                                      */

typedef struct {
    int n, W;
    u64 *mpred;    /* n*W: ops that must have run before op v's macro */
    u64 *shares;   /* n*W: ops whose free move may be enabled by running v (mshares) */
    u64 *block;    /* n*W: sources run by v's macro */
    u64 *can_free; /* W */
    int64_t *up;   /* n: outputs + nested bytes of v */
    int64_t *kept; /* n: kept outputs of v */
    int32_t *succ_ptr, *succ;  /* CSR: macro successors */
    int32_t *in_ptr;           /* n+1: arena inputs of v (entries in_ptr[v]..in_ptr[v+1]) */
    int64_t *in_size;          /* per input entry */
    int32_t *in_cptr, *cons;   /* per input entry i: its readers cons[in_cptr[2i]..in_cptr[2i+1]]
                                * (entries reading one tensor share one range) */
    int32_t *al_ptr;           /* n+1: in-place pairs of v */
    int64_t *al_size;          /* per pair: the output's bytes */
    int32_t *al_cptr, *al_c;   /* per pair: candidate inputs, as entry offsets from in_ptr[v] */
} Tables;

static void *copy_buffer(PyObject *obj, Py_ssize_t itemsize, Py_ssize_t want, const char *name) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (view.len % itemsize || (want >= 0 && view.len != want * itemsize)) {
        PyErr_Format(PyExc_ValueError, "searchcore: table %s has %zd bytes", name, view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    void *out = malloc(view.len ? (size_t)view.len : 1);
    if (!out) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(out, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return out;
}

static void tables_free(Tables *t) {
    if (!t)
        return;
    free(t->mpred); free(t->shares); free(t->block); free(t->can_free);
    free(t->up); free(t->kept); free(t->succ_ptr); free(t->succ);
    free(t->in_ptr); free(t->in_size); free(t->in_cptr); free(t->cons);
    free(t->al_ptr); free(t->al_size); free(t->al_cptr); free(t->al_c);
    free(t);
}

static void capsule_free(PyObject *cap) {
    tables_free((Tables *)PyCapsule_GetPointer(cap, "searchcore.Tables"));
}

static PyObject *make_tables(PyObject *self, PyObject *args) {
    int n, W;
    PyObject *o[16];
    if (!PyArg_ParseTuple(args, "iiOOOOOOOOOOOOOOOO", &n, &W, &o[0], &o[1], &o[2], &o[3],
                          &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12],
                          &o[13], &o[14], &o[15]))
        return NULL;
    if (n < 0 || W < 1 || (Py_ssize_t)W * 64 < n) {
        PyErr_SetString(PyExc_ValueError, "searchcore: bad n or W");
        return NULL;
    }
    Tables *t = calloc(1, sizeof(Tables));
    if (!t)
        return PyErr_NoMemory();
    t->n = n;
    t->W = W;
    Py_ssize_t nw = (Py_ssize_t)n * W;
    if (!(t->mpred = copy_buffer(o[0], 8, nw, "mpred"))) goto fail;
    if (!(t->shares = copy_buffer(o[1], 8, nw, "shares"))) goto fail;
    if (!(t->block = copy_buffer(o[2], 8, nw, "block"))) goto fail;
    if (!(t->can_free = copy_buffer(o[3], 8, W, "can_free"))) goto fail;
    if (!(t->up = copy_buffer(o[4], 8, n, "up"))) goto fail;
    if (!(t->kept = copy_buffer(o[5], 8, n, "kept"))) goto fail;
    if (!(t->succ_ptr = copy_buffer(o[6], 4, n + 1, "succ_ptr"))) goto fail;
    if (!(t->succ = copy_buffer(o[7], 4, t->succ_ptr[n], "succ"))) goto fail;
    if (!(t->in_ptr = copy_buffer(o[8], 4, n + 1, "in_ptr"))) goto fail;
    Py_ssize_t n_in = t->in_ptr[n];
    if (!(t->in_size = copy_buffer(o[9], 8, n_in, "in_size"))) goto fail;
    if (!(t->in_cptr = copy_buffer(o[10], 4, 2 * n_in, "in_cptr"))) goto fail;
    Py_ssize_t n_cons = 0;
    for (Py_ssize_t i = 0; i < n_in; i++) {
        if (t->in_cptr[2 * i] < 0 || t->in_cptr[2 * i] > t->in_cptr[2 * i + 1]) goto range;
        if (t->in_cptr[2 * i + 1] > n_cons) n_cons = t->in_cptr[2 * i + 1];
    }
    if (!(t->cons = copy_buffer(o[11], 4, n_cons, "cons"))) goto fail;
    if (!(t->al_ptr = copy_buffer(o[12], 4, n + 1, "al_ptr"))) goto fail;
    Py_ssize_t n_al = t->al_ptr[n];
    if (!(t->al_size = copy_buffer(o[13], 8, n_al, "al_size"))) goto fail;
    if (!(t->al_cptr = copy_buffer(o[14], 4, n_al + 1, "al_cptr"))) goto fail;
    if (!(t->al_c = copy_buffer(o[15], 4, t->al_cptr[n_al], "al_c"))) goto fail;
    for (Py_ssize_t i = 0; i < t->succ_ptr[n]; i++)
        if (t->succ[i] < 0 || t->succ[i] >= n) goto range;
    for (Py_ssize_t i = 0; i < n_cons; i++)
        if (t->cons[i] < 0 || t->cons[i] >= n) goto range;
    for (int v = 0; v < n; v++)
        for (int a = t->al_ptr[v]; a < t->al_ptr[v + 1]; a++)
            for (int c = t->al_cptr[a]; c < t->al_cptr[a + 1]; c++)
                if (t->al_c[c] < 0 || t->in_ptr[v] + t->al_c[c] >= t->in_ptr[v + 1]) goto range;
    return PyCapsule_New(t, "searchcore.Tables", capsule_free);
range:
    PyErr_SetString(PyExc_ValueError, "searchcore: an index in the tables is out of range");
fail:
    tables_free(t);
    return NULL;
}

/* ------------------------------------------------------------------------------------- */
/* Bitsets                                                                                 */

static inline int bit(const u64 *s, int i) { return (int)((s[i >> 6] >> (i & 63)) & 1u); }
static inline void setbit(u64 *s, int i) { s[i >> 6] |= (u64)1 << (i & 63); }
static inline void clrbit(u64 *s, int i) { s[i >> 6] &= ~((u64)1 << (i & 63)); }

static inline int popcount(const u64 *s, int W) {
    int c = 0;
    for (int w = 0; w < W; w++)
        c += __builtin_popcountll(s[w]);
    return c;
}

/* Lowest set bit at or after word *from, or -1; *from advances past empty words. */
static inline int lowest(const u64 *s, int W, int *from) {
    for (int w = *from; w < W; w++) {
        if (s[w]) {
            *from = w;
            return w * 64 + __builtin_ctzll(s[w]);
        }
    }
    *from = W;
    return -1;
}

/* Python's integer order on two states: the highest differing word decides. */
static inline int cmp_bits(const u64 *a, const u64 *b, int W) {
    for (int w = W - 1; w >= 0; w--)
        if (a[w] != b[w])
            return a[w] < b[w] ? -1 : 1;
    return 0;
}

static inline int equal_bits(const u64 *a, const u64 *b, int W) {
    return memcmp(a, b, (size_t)W * 8) == 0;
}

/* ------------------------------------------------------------------------------------- */
/* Steps (scheduler._mstep / _step)                                                        */

/* Running v's macro in state S: writes the new state to S2, returns the step cost above
 * the resident bytes in *up and the change of resident bytes in *delta. */
static inline void step(const Tables *T, const u64 *S, int v, u64 *S2, int64_t *up,
                        int64_t *delta) {
    const int W = T->W;
    const u64 *b = T->block + (size_t)v * W;
    int64_t kb = 0;
    for (int w = 0; w < W; w++) {
        u64 x = b[w] & ~S[w];
        S2[w] = S[w] | b[w];
        while (x) {
            kb += T->kept[w * 64 + __builtin_ctzll(x)];
            x &= x - 1;
        }
    }
    setbit(S2, v);
    int64_t freed = 0;
    const int i0 = T->in_ptr[v], i1 = T->in_ptr[v + 1];
    for (int i = i0; i < i1; i++) {
        int dies = 1;
        for (int c = T->in_cptr[2 * i]; c < T->in_cptr[2 * i + 1]; c++)
            if (!bit(S2, T->cons[c])) {
                dies = 0;
                break;
            }
        if (dies)
            freed += T->in_size[i];
    }
    int64_t saved = 0;
    for (int a = T->al_ptr[v]; a < T->al_ptr[v + 1]; a++) {
        for (int c = T->al_cptr[a]; c < T->al_cptr[a + 1]; c++) {
            int i = i0 + T->al_c[c], dies = 1;
            for (int k = T->in_cptr[2 * i]; k < T->in_cptr[2 * i + 1]; k++)
                if (!bit(S2, T->cons[k])) {
                    dies = 0;
                    break;
                }
            if (dies) {
                saved += T->al_size[a];
                break;
            }
        }
    }
    *up = T->up[v] - saved + kb;
    *delta = T->kept[v] - freed + kb;
}

/* The macros that running v makes ready in state S (scheduler.search's newly_ready). */
static inline void newly_ready(const Tables *T, const u64 *goal, int v, const u64 *S,
                               u64 *out) {
    const int W = T->W;
    memset(out, 0, (size_t)W * 8);
    for (int k = T->succ_ptr[v]; k < T->succ_ptr[v + 1]; k++) {
        int w = T->succ[k];
        if (!bit(goal, w) || bit(S, w))
            continue;
        const u64 *mp = T->mpred + (size_t)w * W;
        int ok = 1;
        for (int j = 0; j < W; j++)
            if (mp[j] & ~S[j]) {
                ok = 0;
                break;
            }
        if (ok)
            setbit(out, w);
    }
}

/* Free moves under key from (S, R, *M) until none is left (decision.free_moves): S, R and
 * *M are updated in place, the macros run are written to moved; returns their number.
 * check: the ready macros that may be free; r, S2, nw: scratch bitsets of W words. */
static int free_moves(const Tables *T, const u64 *goal, u64 *S, u64 *R, int64_t *M,
                      int64_t key, const u64 *check, u64 *r, u64 *S2, u64 *nw,
                      int32_t *moved) {
    const int W = T->W;
    const u64 *can_free = T->can_free;
    int nmoved = 0, from = 0;
    for (int w = 0; w < W; w++)
        r[w] = check[w] & can_free[w] & R[w];
    for (;;) {
        int v = lowest(r, W, &from);
        if (v < 0)
            break;
        clrbit(r, v);
        int64_t up, delta;
        step(T, S, v, S2, &up, &delta);
        if (delta <= 0 && *M + up <= key) {
            memcpy(S, S2, (size_t)W * 8);
            *M += delta;
            moved[nmoved++] = v;
            newly_ready(T, goal, v, S, nw);
            clrbit(R, v);
            const u64 *sh = T->shares + (size_t)v * W;
            for (int w = 0; w < W; w++) {
                R[w] |= nw[w];
                r[w] = (delta < 0 ? R[w] : (r[w] | nw[w] | (sh[w] & R[w]))) & can_free[w];
            }
            from = 0;
        }
    }
    return nmoved;
}

/* Grow the array at *p to n elements of the given size (0), or leave it as it was (-1). */
static int grow(void **p, size_t n, size_t size) {
    void *q = realloc(*p, n * size);
    if (!q)
        return -1;
    *p = q;
    return 0;
}

/* ------------------------------------------------------------------------------------- */
/* The state table (best_key, closed, bounded and parent of every state seen)             */

typedef struct {
    int64_t key;      /* best_key[S] */
    u64 hash;
    int32_t parent;   /* entry of the state before, -1: none */
    int32_t rec;      /* its closure-bound records (Bounds.sets), -1: none */
    int32_t nmoves;   /* the macros run from the parent: moves[moves .. moves + nmoves] */
    int64_t moves;
    uint8_t closed, bounded;
} Entry;

typedef struct {
    int W;
    Entry *e;
    u64 *st;          /* cap * W */
    size_t len, cap;
    int32_t *slot;    /* open addressing: entry index or -1 */
    size_t nslot;     /* a power of two */
    int32_t *moves;
    size_t nmov, capmov;
} Table;

static int table_init(Table *t, int W) {
    memset(t, 0, sizeof(*t));
    t->W = W;
    t->cap = 1024;
    t->nslot = 2048;
    t->capmov = 4096;
    t->e = malloc(t->cap * sizeof(Entry));
    t->st = malloc(t->cap * W * 8);
    t->slot = malloc(t->nslot * sizeof(int32_t));
    t->moves = malloc(t->capmov * sizeof(int32_t));
    if (!t->e || !t->st || !t->slot || !t->moves)
        return -1;
    memset(t->slot, 0xff, t->nslot * sizeof(int32_t));
    return 0;
}

static void table_free(Table *t) {
    free(t->e); free(t->st); free(t->slot); free(t->moves);
}

static inline const u64 *state_of(const Table *t, int32_t i) {
    return t->st + (size_t)i * t->W;
}

static int32_t table_find(const Table *t, const u64 *S, u64 h) {
    size_t mask = t->nslot - 1, j = (size_t)h & mask;
    for (;;) {
        int32_t i = t->slot[j];
        if (i < 0)
            return -1;
        if (t->e[i].hash == h && equal_bits(state_of(t, i), S, t->W))
            return i;
        j = (j + 1) & mask;
    }
}

static int table_grow_slots(Table *t) {
    size_t ns = t->nslot * 2;
    int32_t *s = malloc(ns * sizeof(int32_t));
    if (!s)
        return -1;
    memset(s, 0xff, ns * sizeof(int32_t));
    for (size_t i = 0; i < t->len; i++) {
        size_t j = (size_t)t->e[i].hash & (ns - 1);
        while (s[j] >= 0)
            j = (j + 1) & (ns - 1);
        s[j] = (int32_t)i;
    }
    free(t->slot);
    t->slot = s;
    t->nslot = ns;
    return 0;
}

/* A new entry for S (not in the table); -1 when out of memory. */
static int32_t table_add(Table *t, const u64 *S, u64 h) {
    if (t->len >= (size_t)INT32_MAX - 1)
        return -1;
    if (t->len == t->cap) {
        size_t nc = t->cap * 2;
        if (grow((void **)&t->e, nc, sizeof(Entry)) < 0 ||
            grow((void **)&t->st, nc, (size_t)t->W * 8) < 0)
            return -1;
        t->cap = nc;
    }
    if (2 * (t->len + 1) > t->nslot && table_grow_slots(t) < 0)
        return -1;
    int32_t i = (int32_t)t->len++;
    memcpy(t->st + (size_t)i * t->W, S, (size_t)t->W * 8);
    Entry *e = &t->e[i];
    e->key = 0;
    e->hash = h;
    e->parent = -1;
    e->rec = -1;
    e->nmoves = 0;
    e->moves = 0;
    e->closed = e->bounded = 0;
    size_t mask = t->nslot - 1, j = (size_t)h & mask;
    while (t->slot[j] >= 0)
        j = (j + 1) & mask;
    t->slot[j] = i;
    return i;
}

static int table_set_parent(Table *t, int32_t i, int32_t parent, const int32_t *mv, int k) {
    if (t->nmov + (size_t)k > t->capmov) {
        size_t nc = t->capmov;
        while (t->nmov + (size_t)k > nc)
            nc *= 2;
        if (grow((void **)&t->moves, nc, sizeof(int32_t)) < 0)
            return -1;
        t->capmov = nc;
    }
    memcpy(t->moves + t->nmov, mv, (size_t)k * sizeof(int32_t));
    t->e[i].parent = parent;
    t->e[i].moves = (int64_t)t->nmov;
    t->e[i].nmoves = k;
    t->nmov += (size_t)k;
    return 0;
}

/* ------------------------------------------------------------------------------------- */
/* The open list: a binary heap in Python's tuple order                                    */

typedef struct {
    int64_t key, M;
    u64 hi;           /* the state's highest word: most ties end there, without a lookup */
    int32_t negdepth;
    int32_t state;    /* entry index */
    int32_t bits;     /* slot of (ready, check) in the bit pool */
} Item;

typedef struct {
    int W;
    const Table *tab;
    Item *a;
    size_t len, cap;
    u64 *pool;        /* slots of 2W words: ready, check */
    size_t npool, cappool;
    int32_t *freelist;
    size_t nfree, capfree;
} Heap;

static inline const u64 *ready_of(const Heap *h, int32_t s) {
    return h->pool + (size_t)s * 2 * h->W;
}

static inline int item_less(const Heap *h, const Item *x, const Item *y) {
    if (x->key != y->key) return x->key < y->key;
    if (x->negdepth != y->negdepth) return x->negdepth < y->negdepth;
    if (x->M != y->M) return x->M < y->M;
    int W = h->W, c;
    if (x->hi != y->hi) return x->hi < y->hi;
    if (x->state != y->state) {
        c = cmp_bits(state_of(h->tab, x->state), state_of(h->tab, y->state), W);
        if (c) return c < 0;
    }
    const u64 *bx = ready_of(h, x->bits), *by = ready_of(h, y->bits);
    c = cmp_bits(bx, by, W);
    if (c) return c < 0;
    return cmp_bits(bx + W, by + W, W) < 0;
}

static int heap_init(Heap *h, int W, const Table *tab) {
    memset(h, 0, sizeof(*h));
    h->W = W;
    h->tab = tab;
    h->cap = 1024;
    h->cappool = 1024;
    h->capfree = 1024;
    h->a = malloc(h->cap * sizeof(Item));
    h->pool = malloc(h->cappool * 2 * W * 8);
    h->freelist = malloc(h->capfree * sizeof(int32_t));
    return (h->a && h->pool && h->freelist) ? 0 : -1;
}

static void heap_free(Heap *h) {
    free(h->a); free(h->pool); free(h->freelist);
}

static void heap_release(Heap *h, int32_t s) {
    if (h->nfree == h->capfree) {
        if (grow((void **)&h->freelist, h->capfree * 2, sizeof(int32_t)) < 0)
            return;  /* the slot is leaked, not reused: still correct */
        h->capfree *= 2;
    }
    h->freelist[h->nfree++] = s;
}

static int heap_push(Heap *h, int64_t key, int32_t negdepth, int64_t M, int32_t state,
                     const u64 *ready, const u64 *check) {
    int W = h->W;
    int32_t s;
    if (h->nfree) {
        s = h->freelist[--h->nfree];
    } else {
        if (h->npool == h->cappool) {
            if (grow((void **)&h->pool, h->cappool * 2, 2 * (size_t)W * 8) < 0)
                return -1;
            h->cappool *= 2;
        }
        if (h->npool >= (size_t)INT32_MAX)
            return -1;
        s = (int32_t)h->npool++;
    }
    u64 *dst = h->pool + (size_t)s * 2 * W;
    memcpy(dst, ready, (size_t)W * 8);
    if (check)
        memcpy(dst + W, check, (size_t)W * 8);
    else
        memset(dst + W, 0, (size_t)W * 8);
    if (h->len == h->cap) {
        if (grow((void **)&h->a, h->cap * 2, sizeof(Item)) < 0)
            return -1;
        h->cap *= 2;
    }
    Item it = {key, M, state_of(h->tab, state)[W - 1], negdepth, state, s};
    size_t i = h->len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!item_less(h, &it, &h->a[p]))
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = it;
    return 0;
}

/* Removes the smallest item (h->len > 0) into *out; its bits stay valid until released. */
static void heap_pop(Heap *h, Item *out) {
    *out = h->a[0];
    Item last = h->a[--h->len];
    size_t i = 0, n = h->len;
    if (!n)
        return;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && item_less(h, &h->a[c + 1], &h->a[c]))
            c++;
        if (!item_less(h, &h->a[c], &last))
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    h->a[i] = last;
}

/* ------------------------------------------------------------------------------------- */
/* Conversions and the clock                                                               */

static PyObject *bits_to_int(const u64 *s, int W) {
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromUnsignedNativeBytes(s, (size_t)W * 8,
                                          Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#else
    return _PyLong_FromByteArray((const unsigned char *)s, (size_t)W * 8, 1, 0);
#endif
}

static int bytes_to_bits(PyObject *obj, u64 *out, int W, const char *name) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view.len != (Py_ssize_t)W * 8) {
        PyErr_Format(PyExc_ValueError, "searchcore: %s has %zd bytes, not %d", name, view.len,
                     W * 8);
        PyBuffer_Release(&view);
        return -1;
    }
    memcpy(out, view.buf, (size_t)W * 8);
    PyBuffer_Release(&view);
    return 0;
}

static double now(void) {
#ifdef _WIN32
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
}

/* The parent links from state i back to the start, into dict d: {S: (prev, heads)}. */
static int add_chain(PyObject *d, const Table *t, int32_t i) {
    while (i >= 0 && t->e[i].parent >= 0) {
        PyObject *S = bits_to_int(state_of(t, i), t->W);
        if (!S)
            return -1;
        int has = PyDict_Contains(d, S);
        if (has) {  /* the rest of the chain is in already */
            Py_DECREF(S);
            return has < 0 ? -1 : 0;
        }
        const Entry *e = &t->e[i];
        PyObject *heads = PyTuple_New(e->nmoves);
        PyObject *prev = bits_to_int(state_of(t, e->parent), t->W);
        if (!heads || !prev) {
            Py_DECREF(S); Py_XDECREF(heads); Py_XDECREF(prev);
            return -1;
        }
        for (int k = 0; k < e->nmoves; k++)
            PyTuple_SET_ITEM(heads, k, PyLong_FromLong(t->moves[e->moves + k]));
        PyObject *val = PyTuple_Pack(2, prev, heads);
        Py_DECREF(prev);
        Py_DECREF(heads);
        if (!val || PyDict_SetItem(d, S, val) < 0) {
            Py_DECREF(S); Py_XDECREF(val);
            return -1;
        }
        Py_DECREF(S);
        Py_DECREF(val);
        i = e->parent;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------- */
/* Per-state closure bounds (bounds.StateClosure) on a compiled maximum flow              */

/* Flow (the flow network of one bounds.StateClosure) is declared in _searchcore.h. */

/* After a maximum flow: the ops (bit set in ``outside``, W words) whose nodes reach the sink
 * in the residual graph. The others, with the forced ops, form the largest minimising
 * closure D (a min cut's source side; closed under the infinite predecessor arcs, which
 * never saturate). Every state S between the forced one and D has the same bound: D is
 * feasible for S and S's choices are a subset. */
static void flow_outside(Flow *f, u64 *outside, int W) {
    int32_t *seen = f->level, *q = f->queue;
    for (int a = 0; a < f->nn; a++)
        seen[a] = f->dead[a];  /* merged with the source: inside */
    int qh = 0, qt = 0;
    seen[1] = 1;
    q[qt++] = 1;
    while (qh < qt) {
        int y = q[qh++];
        for (int k = f->adj_ptr[y]; k < f->adj_ptr[y + 1]; k++) {
            int e = f->adj[k] ^ 1;  /* the arc from head[adj[k]] into y */
            int x = f->head[f->adj[k]];
            if (!seen[x] && f->cap[e] > 0) {
                seen[x] = 1;
                q[qt++] = x;
            }
        }
    }
    memset(outside, 0, (size_t)W * 8);
    for (int k = 0; k < f->nf; k++)
        if (seen[f->head[2 * f->f_arc[k]]] && f->f_op[k] < W * 64)
            setbit(outside, f->f_op[k]);
}

void flow_free(Flow *f) {
    if (!f)
        return;
    free(f->head); free(f->cap0); free(f->cap); free(f->adj_ptr); free(f->adj);
    free(f->f_arc); free(f->f_op); free(f->o_arc); free(f->level); free(f->it); free(f->queue);
    free(f->path);
    free(f->dead);
    free(f);
}

static void flow_capsule_free(PyObject *cap) {
    flow_free((Flow *)PyCapsule_GetPointer(cap, "searchcore.Flow"));
}

/* Fill f's arcs and node tables (nn nodes, m forward arcs tails[i] -> heads[i] of capacity
 * caps[i], each with its reverse arc); FLOW_OK, FLOW_NO_MEMORY or FLOW_BAD_ARC. */
int flow_arcs(Flow *f, int nn, int64_t m, const int32_t *tails, const int32_t *heads,
              const int64_t *caps) {
    f->nn = nn;
    f->na = (int)(2 * m);
    f->head = malloc(((size_t)f->na + 1) * 4);
    f->cap0 = malloc(((size_t)f->na + 1) * 8);
    f->cap = malloc(((size_t)f->na + 1) * 8);
    f->adj_ptr = calloc((size_t)nn + 1, 4);
    f->adj = malloc(((size_t)f->na + 1) * 4);
    f->level = malloc((size_t)nn * 4);
    f->it = malloc((size_t)nn * 4);
    f->queue = malloc((size_t)nn * 4);
    f->path = malloc(((size_t)nn + 1) * 4);
    f->dead = calloc((size_t)nn, 1);
    if (!f->dead || !f->head || !f->cap0 || !f->cap || !f->adj_ptr || !f->adj || !f->level || !f->it
        || !f->queue || !f->path) {
        return FLOW_NO_MEMORY;
    }
    for (int64_t i = 0; i < m; i++) {
        if (tails[i] < 0 || tails[i] >= nn || heads[i] < 0 || heads[i] >= nn || caps[i] < 0) {
            return FLOW_BAD_ARC;
        }
        f->head[2 * i] = heads[i];
        f->cap0[2 * i] = caps[i];
        f->head[2 * i + 1] = tails[i];
        f->cap0[2 * i + 1] = 0;
        f->adj_ptr[tails[i] + 1]++;
        f->adj_ptr[heads[i] + 1]++;
    }
    for (int a = 0; a < nn; a++)
        f->adj_ptr[a + 1] += f->adj_ptr[a];
    memcpy(f->it, f->adj_ptr, (size_t)nn * 4);
    for (int64_t i = 0; i < m; i++) {
        f->adj[f->it[tails[i]]++] = (int32_t)(2 * i);
        f->adj[f->it[heads[i]]++] = (int32_t)(2 * i + 1);
    }
    return FLOW_OK;
}

static PyObject *make_flow(PyObject *self, PyObject *args) {
    int nn;
    PyObject *otails, *oheads, *ocaps, *oarcs, *oops, *oout;
    long long big, base, gain;
    if (!PyArg_ParseTuple(args, "iOOOOOOLLL", &nn, &otails, &oheads, &ocaps, &oarcs, &oops,
                          &oout, &big, &base, &gain))
        return NULL;
    Flow *f = calloc(1, sizeof(Flow));
    int32_t *tails = NULL, *heads = NULL;
    int64_t *caps = NULL;
    if (!f)
        return PyErr_NoMemory();
    Py_ssize_t m;
    {
        Py_buffer v;
        if (PyObject_GetBuffer(otails, &v, PyBUF_C_CONTIGUOUS) < 0)
            goto fail;
        m = v.len / 4;
        PyBuffer_Release(&v);
    }
    if (!(tails = copy_buffer(otails, 4, m, "tails"))) goto fail;
    if (!(heads = copy_buffer(oheads, 4, m, "heads"))) goto fail;
    if (!(caps = copy_buffer(ocaps, 8, m, "caps"))) goto fail;
    {
        Py_buffer v;
        if (PyObject_GetBuffer(oarcs, &v, PyBUF_C_CONTIGUOUS) < 0)
            goto fail;
        f->nf = (int)(v.len / 4);
        PyBuffer_Release(&v);
    }
    if (!(f->f_arc = copy_buffer(oarcs, 4, f->nf, "arcs"))) goto fail;
    if (!(f->f_op = copy_buffer(oops, 4, f->nf, "ops"))) goto fail;
    if (!(f->o_arc = copy_buffer(oout, 4, f->nf, "out_arcs"))) goto fail;
    if (nn < 2 || m > INT32_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "searchcore: bad flow network");
        goto fail;
    }
    f->big = big;
    f->base = base;
    f->gain = gain;
    switch (flow_arcs(f, nn, m, tails, heads, caps)) {
    case FLOW_NO_MEMORY:
        PyErr_NoMemory();
        goto fail;
    case FLOW_BAD_ARC:
        PyErr_SetString(PyExc_ValueError, "searchcore: bad arc in the flow network");
        goto fail;
    }
    for (int k = 0; k < f->nf; k++)
        if (f->f_arc[k] < 0 || f->f_arc[k] >= m || f->f_op[k] < 0 || f->o_arc[k] < 0
            || f->o_arc[k] >= m || heads[f->o_arc[k]] != 1) {
            PyErr_SetString(PyExc_ValueError, "searchcore: bad forcing arc");
            goto fail;
        }
    free(tails); free(heads); free(caps);
    return PyCapsule_New(f, "searchcore.Flow", flow_capsule_free);
fail:
    free(tails); free(heads); free(caps);
    flow_free(f);
    return NULL;
}

/* One augmenting path in the level graph (as bounds._FlowGraph._augment); 0: none left. */
static int64_t flow_augment(Flow *f) {
    int32_t *path = f->path;
    int np = 0, a = 0;
    for (;;) {
        if (a == 1) {
            int64_t push = INT64_MAX;
            for (int k = 0; k < np; k++)
                if (f->cap[path[k]] < push)
                    push = f->cap[path[k]];
            for (int k = 0; k < np; k++) {
                f->cap[path[k]] -= push;
                f->cap[path[k] ^ 1] += push;
            }
            return push;
        }
        int e = -1;
        while (f->it[a] < f->adj_ptr[a + 1]) {
            int c = f->adj[f->it[a]];
            if (f->cap[c] > 0 && f->level[f->head[c]] == f->level[a] + 1) {
                e = c;
                break;
            }
            f->it[a]++;
        }
        if (e < 0) {
            if (!np)
                return 0;
            f->level[a] = -1;  /* dead end */
            e = path[--np];
            a = f->head[e ^ 1];
            f->it[a]++;
            continue;
        }
        path[np++] = e;
        a = f->head[e];
    }
}

int64_t flow_max(Flow *f) {
    int64_t total = 0;
    for (;;) {
        for (int a = 0; a < f->nn; a++)
            f->level[a] = f->dead[a] ? -2 : -1;  /* -2: never entered */
        f->level[0] = 0;
        int qh = 0, qt = 0;
        f->queue[qt++] = 0;
        while (qh < qt) {
            int a = f->queue[qh++];
            if (f->level[1] >= 0 && f->level[a] >= f->level[1])
                break;  /* no shortest path goes deeper than the sink: left unlevelled */
            for (int k = f->adj_ptr[a]; k < f->adj_ptr[a + 1]; k++) {
                int e = f->adj[k];
                if (f->cap[e] > 0 && f->level[f->head[e]] == -1) {
                    f->level[f->head[e]] = f->level[a] + 1;
                    f->queue[qt++] = f->head[e];
                }
            }
        }
        if (f->level[1] < 0)
            return total;
        memcpy(f->it, f->adj_ptr, (size_t)f->nn * 4);
        int64_t pushed;
        while ((pushed = flow_augment(f)) > 0)
            total += pushed;
    }
}

/* StateClosure.bound(S): the op's least step over the states containing downset S.
 *
 * The forced ops are on the source side of every minimum cut (their forcing arcs exceed any
 * cut), so they are merged with the source: a forced node's arcs to the sink are cut
 * whatever the rest (their capacity is added once), arcs between forced nodes are never
 * cut, and the flow runs on the other nodes only. That is exact when no arc of positive
 * capacity leads from a forced node to an unforced one other than the sink (true of the
 * closure network: forced ops form a downset and their arcs go to predecessors); otherwise
 * the forcing arcs are set to ``big`` as StateClosure.bound does. */
/* A greedy start for Dinic's algorithm: every path source -> node -> node -> sink with room
 * left on all three arcs gets as much flow as it takes, skipping nodes merged with the
 * source (their arcs to the sink are already counted). Pushing a flow along a path keeps
 * the rest a maximum-flow problem on the residual graph (the value is the sum, and the
 * nodes that reach the sink in the residual graph of a maximum flow are the same for every
 * maximum flow), so only speed changes: in the closure networks most tensors' bytes go
 * this way (to a reader that keeps its outputs, or to a forced-out reader), which spares
 * one augmenting path each. */
static int64_t preflow(Flow *f) {
    int64_t pushed = 0;
    for (int k = f->adj_ptr[0]; k < f->adj_ptr[1]; k++) {
        int e0 = f->adj[k], y = f->head[e0];
        if ((e0 & 1) || f->dead[y])
            continue;
        for (int j = f->adj_ptr[y]; j < f->adj_ptr[y + 1] && f->cap[e0] > 0; j++) {
            int e = f->adj[j], x = f->head[e];
            if ((e & 1) || x == 1 || f->dead[x] || f->cap[e] <= 0)
                continue;
            for (int i = f->adj_ptr[x]; i < f->adj_ptr[x + 1] && f->cap[e0] > 0; i++) {
                int eo = f->adj[i];
                if ((eo & 1) || f->head[eo] != 1 || f->cap[eo] <= 0)
                    continue;
                int64_t d = f->cap[e0];
                if (f->cap[e] < d) d = f->cap[e];
                if (f->cap[eo] < d) d = f->cap[eo];
                f->cap[e0] -= d; f->cap[e0 ^ 1] += d;
                f->cap[e] -= d; f->cap[e ^ 1] += d;
                f->cap[eo] -= d; f->cap[eo ^ 1] += d;
                pushed += d;
            }
        }
    }
    return pushed;
}

int64_t flow_value(Flow *f, const u64 *S, const u64 *out, int nbits) {
    memcpy(f->cap, f->cap0, (size_t)f->na * 8);
    if (out)  /* forced out of the closure: its arc to the sink exceeds any cut */
        for (int k = 0; k < f->nf; k++)
            if (f->f_op[k] < nbits && bit(out, f->f_op[k]))
                f->cap[2 * f->o_arc[k]] = f->big;
    memset(f->dead, 0, (size_t)f->nn);
    for (int k = 0; k < f->nf; k++) {
        int op = f->f_op[k];
        if (op < nbits && bit(S, op))
            f->dead[f->head[2 * f->f_arc[k]]] = 1;
    }
    f->dead[0] = f->dead[1] = 0;
    int64_t pre = 0;
    int merged = 1;
    for (int u = 2; u < f->nn && merged; u++) {
        if (!f->dead[u])
            continue;
        for (int k = f->adj_ptr[u]; k < f->adj_ptr[u + 1]; k++) {
            int e = f->adj[k], x = f->head[e];
            if (f->cap0[e] <= 0 || f->dead[x])
                continue;
            if (x != 1) {
                merged = 0;
                break;
            }
            pre += f->cap0[e];
        }
    }
    if (!merged) {
        memset(f->dead, 0, (size_t)f->nn);
        pre = 0;
        for (int k = 0; k < f->nf; k++) {
            int op = f->f_op[k];
            if (op < nbits && bit(S, op))
                f->cap[2 * f->f_arc[k]] = f->big;
        }
    }
    pre += preflow(f);
    return pre + flow_max(f);
}

static int64_t flow_bound(Flow *f, const u64 *S, int nbits) {
    return f->base - (f->gain - flow_value(f, S, NULL, nbits));
}

static PyObject *py_flow_bound(PyObject *self, PyObject *args) {
    PyObject *cap, *oS;
    int W;
    if (!PyArg_ParseTuple(args, "OOi", &cap, &oS, &W))
        return NULL;
    Flow *f = PyCapsule_GetPointer(cap, "searchcore.Flow");
    if (!f)
        return NULL;
    u64 *S = malloc((size_t)W * 8);
    if (!S)
        return PyErr_NoMemory();
    if (bytes_to_bits(oS, S, W, "state") < 0) {
        free(S);
        return NULL;
    }
    int64_t b = flow_bound(f, S, W * 64);
    free(S);
    return PyLong_FromLongLong(b);
}

/* flow_value(flow, state_bytes, out_bytes, W): the maximum flow with the ops of S forced in
 * and those of ``out`` forced out (StateClosure.bound(S, out) before its arithmetic). */
static PyObject *py_flow_value(PyObject *self, PyObject *args) {
    PyObject *cap, *oS, *oO;
    int W;
    if (!PyArg_ParseTuple(args, "OOOi", &cap, &oS, &oO, &W))
        return NULL;
    Flow *f = PyCapsule_GetPointer(cap, "searchcore.Flow");
    if (!f)
        return NULL;
    u64 *S = malloc((size_t)W * 16);
    if (!S)
        return PyErr_NoMemory();
    if (bytes_to_bits(oS, S, W, "state") < 0 || bytes_to_bits(oO, S + W, W, "out") < 0) {
        free(S);
        return NULL;
    }
    int64_t b = flow_value(f, S, S + W, W * 64);
    free(S);
    return PyLong_FromLongLong(b);
}

/* Closure-bound records: per bounded state, per candidate op, the bound found and the ops
 * outside its minimising closure (flow_outside), so that a descendant inside that closure
 * takes the same bound without a flow. */
typedef struct {
    int ncand, W;
    int32_t *sets;    /* per record set: ncand record ids (-1: not computed) */
    size_t nsets, capsets;
    int64_t *b;       /* per record: the bound */
    u64 *outside;     /* per record: W words */
    size_t nrec, caprec;
} Bounds;

/* The state limit is a count (max_states) and a byte budget: states of wide graphs carry
 * many words, and a fast loop fills memory long before the count (a 96-node RandWire stage
 * held 4.6M states in 3.7 GB after 60 s).  The budget keeps the process under 1 GB. */
#define SEARCH_BYTES_LIMIT ((size_t)640 << 20)

static size_t search_bytes(const Table *t, const Heap *h, const Bounds *r) {
    size_t W = (size_t)t->W;
    return t->cap * (sizeof(Entry) + W * 8) + t->nslot * 4 + t->capmov * 4
        + h->cap * sizeof(Item) + h->cappool * 2 * W * 8 + h->capfree * 4
        + r->capsets * ((size_t)r->ncand + 1) * 4 + r->caprec * (8 + (size_t)r->W * 8);
}

static int bounds_init(Bounds *r, int ncand, int W) {
    memset(r, 0, sizeof(*r));
    r->ncand = ncand;
    r->W = W;
    r->capsets = r->caprec = 256;
    r->sets = malloc(r->capsets * ((size_t)ncand + 1) * 4);
    r->b = malloc(r->caprec * 8);
    r->outside = malloc(r->caprec * (size_t)W * 8);
    return (r->sets && r->b && r->outside) ? 0 : -1;
}

static void bounds_free(Bounds *r) {
    free(r->sets); free(r->b); free(r->outside);
}

static int32_t bounds_new_set(Bounds *r) {
    if (r->nsets == r->capsets) {
        if (grow((void **)&r->sets, r->capsets * 2, ((size_t)r->ncand + 1) * 4) < 0)
            return -1;
        r->capsets *= 2;
    }
    if (r->nsets >= (size_t)INT32_MAX)
        return -1;
    int32_t i = (int32_t)r->nsets++;
    for (int c = 0; c < r->ncand; c++)
        r->sets[(size_t)i * r->ncand + c] = -1;
    return i;
}

static int32_t bounds_new_rec(Bounds *r) {
    if (r->nrec == r->caprec) {
        if (grow((void **)&r->b, r->caprec * 2, 8) < 0 ||
            grow((void **)&r->outside, r->caprec * 2, (size_t)r->W * 8) < 0)
            return -1;
        r->caprec *= 2;
    }
    if (r->nrec >= (size_t)INT32_MAX)
        return -1;
    return (int32_t)r->nrec++;
}

/* ------------------------------------------------------------------------------------- */
/* The search                                                                              */

static const char search_doc[] =
    "search(tables, start, goal, ready0, mem, floor, ub, seconds, max_states, closure_after,\n"
    "       cands, flow_of, state_bound, progress, n_frontier)\n"
    "-> (found_key or None, expanded, stopped, frontier, parents)\n\n"
    "The loop of scheduler.search. start, goal, ready0: states as W*8 little-endian bytes.\n"
    "cands: the ops whose closure bounds raise a state's key (int32 buffer), flow_of(i):\n"
    "the compiled flow (make_flow) of cands[i], asked for once, when first needed; or\n"
    "flow_of None and state_bound(S, key) -> int: the whole per-state bound in Python.\n"
    "frontier: the n_frontier smallest open items as (key, -depth, M, S, ready, check);\n"
    "parents: {S: (prev, heads)} along the paths to the goal or the frontier states.";

/* scheduler.dominated: whether a ready macro of S (resident M bytes, ready R) whose change
 * of resident bytes is <= 0 leads, with the free moves under key after it, to a closed
 * state. scratch: 6 W words; moved: room for n + 1 macros. */
static int dominated(const Tables *T, const Table *tab, const u64 *goal, const u64 *S,
                     const u64 *R, int64_t M, int64_t key, u64 *scratch, int32_t *moved) {
    const int W = T->W;
    u64 *D = scratch, *DR = scratch + W, *left = scratch + 2 * W, *r = scratch + 3 * W;
    u64 *S2 = scratch + 4 * W, *nw = scratch + 5 * W;
    int from = 0;
    for (int w = 0; w < W; w++)
        left[w] = R[w] & T->can_free[w];
    for (;;) {
        int v = lowest(left, W, &from);
        if (v < 0)
            return 0;
        clrbit(left, v);
        int64_t up, delta;
        step(T, S, v, D, &up, &delta);
        if (delta > 0)
            continue;
        newly_ready(T, goal, v, D, nw);
        for (int w = 0; w < W; w++)
            DR[w] = R[w] | nw[w];
        clrbit(DR, v);
        int64_t MD = M + delta;
        free_moves(T, goal, D, DR, &MD, key, DR, r, S2, nw, moved);
        int32_t i = table_find(tab, D, hash_bits(D, W));
        if (i >= 0 && tab->e[i].closed)
            return 1;
    }
}

#define FAIL_NOMEM do { PyErr_NoMemory(); goto done; } while (0)

static PyObject *search(PyObject *self, PyObject *args) {
    PyObject *cap, *ostart, *ogoal, *oready0, *ocands, *flow_of, *bound_cb, *progress_cb;
    long long mem, floor_, ub, max_states, closure_after;
    double seconds;
    int n_frontier, dominance;
    if (!PyArg_ParseTuple(args, "OOOOLLLdLLOOOOip", &cap, &ostart, &ogoal, &oready0, &mem,
                          &floor_, &ub, &seconds, &max_states, &closure_after, &ocands, &flow_of,
                          &bound_cb, &progress_cb, &n_frontier, &dominance))
        return NULL;
    Tables *T = PyCapsule_GetPointer(cap, "searchcore.Tables");
    if (!T)
        return NULL;
    const int W = T->W;
    const double deadline = now() + seconds;
    PyObject *result = NULL, *frontier = NULL, *parents = NULL, *flow_refs = NULL;
    int32_t *cands = NULL;
    Flow **flows = NULL;
    int ncand = 0, recs_ok = 0;
    Bounds recs;
    Table tab;
    Heap heap;
    int tab_ok = table_init(&tab, W) == 0, heap_ok = heap_init(&heap, W, &tab) == 0;
    u64 *buf = malloc((size_t)W * 8 * 22);
    int32_t *moved = malloc(((size_t)T->n + 1) * sizeof(int32_t));
    int32_t *dmv = malloc(((size_t)T->n + 1) * sizeof(int32_t));  /* dominance: moves */
    if (!tab_ok || !heap_ok || !buf || !moved || !dmv) {
        PyErr_NoMemory();
        goto done;
    }
    u64 *start = buf, *goal = buf + W, *ready0 = buf + 2 * W, *S = buf + 3 * W;
    u64 *ready = buf + 4 * W, *check = buf + 5 * W, *S3 = buf + 6 * W, *R3 = buf + 7 * W;
    u64 *r = buf + 8 * W, *S2 = buf + 9 * W, *nw = buf + 10 * W, *R2 = buf + 11 * W;
    u64 *chk = buf + 12 * W, *Sf = buf + 13 * W;  /* buf + 16 W .. 22 W: dominated() */
    if (bytes_to_bits(ostart, start, W, "start") < 0 || bytes_to_bits(ogoal, goal, W, "goal") < 0
        || bytes_to_bits(oready0, ready0, W, "ready0") < 0)
        goto done;
    {
        Py_buffer v;
        if (PyObject_GetBuffer(ocands, &v, PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        ncand = (int)(v.len / 4);
        PyBuffer_Release(&v);
    }
    if (!(cands = copy_buffer(ocands, 4, ncand, "cands")))
        goto done;
    flows = calloc((size_t)ncand + 1, sizeof(Flow *));
    flow_refs = PyList_New(0);  /* keeps the flows asked for alive */
    if (!flows || !flow_refs)
        FAIL_NOMEM;
    int use_flows = ncand && flow_of != Py_None;
    if (bounds_init(&recs, ncand, W) < 0)
        FAIL_NOMEM;
    recs_ok = 1;
    const int have_bound = use_flows || bound_cb != Py_None;
    const int have_progress = progress_cb != Py_None;

    int32_t i0 = table_add(&tab, start, hash_bits(start, W));
    if (i0 < 0)
        FAIL_NOMEM;
    tab.e[i0].key = floor_;
    if (heap_push(&heap, floor_, -popcount(start, W), mem, i0, ready0, ready0) < 0)
        FAIL_NOMEM;
    long long expanded = 0, work = 0, raised = 0;
    const char *stopped = "";
    int found = 0;
    int64_t found_key = 0;
    Item it;
    while (heap.len) {
        heap_pop(&heap, &it);
        const int64_t key = it.key;
        memcpy(ready, ready_of(&heap, it.bits), (size_t)W * 8);
        memcpy(check, ready_of(&heap, it.bits) + W, (size_t)W * 8);
        heap_release(&heap, it.bits);
        if (key >= ub) {  /* put back: it is the smallest open key */
            if (heap_push(&heap, it.key, it.negdepth, it.M, it.state, ready, check) < 0)
                FAIL_NOMEM;
            break;
        }
        int32_t si = it.state;
        if (tab.e[si].key < key)
            continue;  /* stale entry */
        memcpy(S, state_of(&tab, si), (size_t)W * 8);
        const int64_t M = it.M;
        if (have_bound && expanded >= closure_after && !tab.e[si].bounded) {
            tab.e[si].bounded = 1;
            long long h = key;
            if (use_flows) {  /* scheduler._state_bound on the compiled flows */
                int32_t set = bounds_new_set(&recs);
                if (set < 0)
                    FAIL_NOMEM;
                tab.e[si].rec = set;
                for (int c = 0; c < ncand; c++) {
                    if (bit(S, cands[c]))
                        continue;
                    /* the record of the nearest state before S with one for this op */
                    int32_t id = -1;
                    for (int32_t a = tab.e[si].parent, k = 0; a >= 0 && k < 64;
                         a = tab.e[a].parent, k++)
                        if (tab.e[a].rec >= 0
                            && (id = recs.sets[(size_t)tab.e[a].rec * ncand + c]) >= 0)
                            break;
                    if (id >= 0) {  /* S inside that state's minimising closure: same bound */
                        const u64 *out = recs.outside + (size_t)id * W;
                        for (int w = 0; w < W; w++)
                            if (S[w] & out[w]) {
                                id = -1;
                                break;
                            }
                    }
                    if (id >= 0) {
                        recs.sets[(size_t)set * ncand + c] = id;
                        if (recs.b[id] > h) {
                            h = recs.b[id];
                            break;
                        }
                        continue;
                    }
                    if (!flows[c]) {
                        PyObject *fc = PyObject_CallFunction(flow_of, "i", c);
                        if (!fc)
                            goto done;
                        if (fc == Py_None) {  /* no compiled flow: bounds in Python from now */
                            Py_DECREF(fc);
                            use_flows = 0;
                            h = key;  /* nothing raised it yet (a raise ends the loop) */
                            break;
                        }
                        int bad = PyList_Append(flow_refs, fc);
                        flows[c] = PyCapsule_GetPointer(fc, "searchcore.Flow");
                        Py_DECREF(fc);
                        if (bad < 0 || !flows[c])
                            goto done;
                    }
                    int64_t b = flow_bound(flows[c], S, W * 64);
                    if ((id = bounds_new_rec(&recs)) < 0)
                        FAIL_NOMEM;
                    recs.b[id] = b;
                    flow_outside(flows[c], recs.outside + (size_t)id * W, W);
                    recs.sets[(size_t)set * ncand + c] = id;
                    if (b > h) {
                        h = b;
                        break;
                    }
                }
            }
            if (!use_flows) {
                PyObject *oS = bits_to_int(S, W);
                if (!oS)
                    goto done;
                PyObject *res = PyObject_CallFunction(bound_cb, "OL", oS, (long long)key);
                Py_DECREF(oS);
                if (!res)
                    goto done;
                if (res != Py_None) {
                    h = PyLong_AsLongLong(res);
                    if (h == -1 && PyErr_Occurred()) {
                        Py_DECREF(res);
                        goto done;
                    }
                }
                Py_DECREF(res);
            }
            if (h > key) {  /* every completion from S peaks at h or more: back, under h */
                if (h < ub) {
                    tab.e[si].key = h;
                    if (heap_push(&heap, h, it.negdepth, M, si, ready, ready) < 0)
                        FAIL_NOMEM;
                }
                /* States put back by their bounds cost flows but expand nothing, so the
                 * clock is also read here (the Python loop, 50x slower per state, reads
                 * it after expansions only; a time limit is not a state-exact stop). */
                if ((++raised & 63) == 0 && now() > deadline) {
                    stopped = "time limit";
                    break;
                }
                continue;
            }
        }
        /* free moves (scheduler.search's free_moves) */
        memcpy(S3, S, (size_t)W * 8);
        memcpy(R3, ready, (size_t)W * 8);
        int64_t M3 = M;
        int nmoved = free_moves(T, goal, S3, R3, &M3, key, check, r, S2, nw, moved);
        int from = 0;
        int32_t s3i = si;
        if (nmoved) {
            u64 h3 = hash_bits(S3, W);
            s3i = table_find(&tab, S3, h3);
            if (s3i >= 0 && (tab.e[s3i].key < key || tab.e[s3i].closed))
                continue;
            if (s3i < 0 && (s3i = table_add(&tab, S3, h3)) < 0)
                FAIL_NOMEM;
            tab.e[s3i].key = key;
            if (table_set_parent(&tab, s3i, si, moved, nmoved) < 0)
                FAIL_NOMEM;
        }
        if (tab.e[s3i].closed)
            continue;
        if (equal_bits(S3, goal, W)) {
            found = 1;
            found_key = key;
            memcpy(Sf, S3, (size_t)W * 8);
            break;
        }
        if (dominance && dominated(T, &tab, goal, S3, R3, M3, key, buf + 16 * W, dmv)) {
            tab.e[s3i].closed = 1;  /* a closed state does all it can at no higher key */
            continue;
        }
        tab.e[s3i].closed = 1;
        expanded++;
        work += popcount(R3, W);
        if ((expanded & 15) == 0 || work > 2000) {
            work = 0;
            if (now() > deadline)
                stopped = "time limit";
            else if ((long long)tab.len > max_states ||
                     search_bytes(&tab, &heap, &recs) > SEARCH_BYTES_LIMIT)
                stopped = "state limit";
            if (*stopped) {
                if (heap_push(&heap, key, -popcount(S3, W), M3, s3i, R3, NULL) < 0)
                    FAIL_NOMEM;
                break;
            }
            if (PyErr_CheckSignals() < 0)
                goto done;
            if (have_progress && (expanded & 1023) == 0) {
                PyObject *res = PyObject_CallFunction(progress_cb, "LLL", expanded,
                                                      (long long)ub, (long long)key);
                if (!res)
                    goto done;
                Py_DECREF(res);
            }
        }
        /* expand every ready macro, lowest op first */
        from = 0;
        for (int w = 0; w < W; w++)
            r[w] = R3[w];
        for (;;) {
            int v = lowest(r, W, &from);
            if (v < 0)
                break;
            clrbit(r, v);
            int64_t up, delta;
            step(T, S3, v, S2, &up, &delta);
            int64_t k2 = M3 + up <= key ? key : M3 + up;
            if (k2 >= ub)
                continue;
            u64 h2 = hash_bits(S2, W);
            int32_t s2i = table_find(&tab, S2, h2);
            if (s2i >= 0 && (tab.e[s2i].closed || tab.e[s2i].key <= k2))
                continue;
            if (s2i < 0 && (s2i = table_add(&tab, S2, h2)) < 0)
                FAIL_NOMEM;
            tab.e[s2i].key = k2;
            int32_t vv = v;
            if (table_set_parent(&tab, s2i, s3i, &vv, 1) < 0)
                FAIL_NOMEM;
            newly_ready(T, goal, v, S2, nw);
            const u64 *sh = T->shares + (size_t)v * W;
            const int all = k2 > key || delta < 0;
            for (int w = 0; w < W; w++) {
                R2[w] = R3[w] | nw[w];
                if (w == (v >> 6))
                    R2[w] ^= (u64)1 << (v & 63);
                chk[w] = all ? R2[w] : (nw[w] | (sh[w] & R2[w]));
            }
            if (heap_push(&heap, k2, -popcount(S2, W), M3 + delta, s2i, R2, chk) < 0)
                FAIL_NOMEM;
        }
    }

    /* the answer */
    frontier = PyList_New(0);
    parents = PyDict_New();
    if (!frontier || !parents)
        goto done;
    if (found) {
        int32_t gi = table_find(&tab, Sf, hash_bits(Sf, W));
        if (add_chain(parents, &tab, gi) < 0)
            goto done;
    } else {
        for (int k = 0; k < n_frontier && heap.len; k++) {
            heap_pop(&heap, &it);
            const u64 *rb = ready_of(&heap, it.bits);
            PyObject *oS = bits_to_int(state_of(&tab, it.state), W);
            PyObject *oR = bits_to_int(rb, W), *oC = bits_to_int(rb + W, W);
            PyObject *tup = (oS && oR && oC) ? Py_BuildValue(
                "(LiLOOO)", (long long)it.key, (int)it.negdepth, (long long)it.M, oS, oR, oC)
                : NULL;
            Py_XDECREF(oS); Py_XDECREF(oR); Py_XDECREF(oC);
            if (!tup || PyList_Append(frontier, tup) < 0) {
                Py_XDECREF(tup);
                goto done;
            }
            Py_DECREF(tup);
            if (add_chain(parents, &tab, it.state) < 0)
                goto done;
        }
    }
    if (found)
        result = Py_BuildValue("(LLsOO)", (long long)found_key, expanded, stopped, frontier,
                               parents);
    else
        result = Py_BuildValue("(OLsOO)", Py_None, expanded, stopped, frontier, parents);
done:
    Py_XDECREF(frontier);
    Py_XDECREF(parents);
    Py_XDECREF(flow_refs);
    free(cands);
    free(flows);
    if (recs_ok)
        bounds_free(&recs);
    if (tab_ok)
        table_free(&tab);
    if (heap_ok)
        heap_free(&heap);
    free(buf);
    free(moved);
    free(dmv);
    return result;
}

/* ------------------------------------------------------------------------------------- */
/* The decision search (decision.decide), state for state                                 */

/* The visited set: states in one array, open addressing on their hashes (recomputed when
 * the slots grow, so a state costs W words and two slots). */
typedef struct {
    int W;
    u64 *st;
    size_t len, cap;
    int32_t *slot;
    size_t nslot;
} Seen;

static int seen_init(Seen *s, int W) {
    memset(s, 0, sizeof(*s));
    s->W = W;
    s->cap = 1024;
    s->nslot = 2048;
    s->st = malloc(s->cap * (size_t)W * 8);
    s->slot = malloc(s->nslot * sizeof(int32_t));
    if (!s->st || !s->slot)
        return -1;
    memset(s->slot, 0xff, s->nslot * sizeof(int32_t));
    return 0;
}

static void seen_free(Seen *s) {
    free(s->st); free(s->slot);
}

static int seen_has(const Seen *s, const u64 *S) {
    size_t mask = s->nslot - 1, j = (size_t)hash_bits(S, s->W) & mask;
    for (;;) {
        int32_t i = s->slot[j];
        if (i < 0)
            return 0;
        if (equal_bits(s->st + (size_t)i * s->W, S, s->W))
            return 1;
        j = (j + 1) & mask;
    }
}

/* Add S (not in the set): 0, or -1 when out of memory. */
static int seen_add(Seen *s, const u64 *S) {
    const int W = s->W;
    if (s->len >= (size_t)INT32_MAX - 1)
        return -1;
    if (s->len == s->cap) {
        if (grow((void **)&s->st, s->cap * 2, (size_t)W * 8) < 0)
            return -1;
        s->cap *= 2;
    }
    if (2 * (s->len + 1) > s->nslot) {
        size_t ns = s->nslot * 2;
        int32_t *sl = malloc(ns * sizeof(int32_t));
        if (!sl)
            return -1;
        memset(sl, 0xff, ns * sizeof(int32_t));
        for (size_t i = 0; i < s->len; i++) {
            size_t j = (size_t)hash_bits(s->st + i * W, W) & (ns - 1);
            while (sl[j] >= 0)
                j = (j + 1) & (ns - 1);
            sl[j] = (int32_t)i;
        }
        free(s->slot);
        s->slot = sl;
        s->nslot = ns;
    }
    memcpy(s->st + s->len * W, S, (size_t)W * 8);
    size_t mask = s->nslot - 1, j = (size_t)hash_bits(S, W) & mask;
    while (s->slot[j] >= 0)
        j = (j + 1) & mask;
    s->slot[j] = (int32_t)s->len++;
    return 0;
}

/* A frame of the depth-first search: its state and ready macros (2W words in the frame
 * pool), resident bytes, the macros its free moves ran and its children (int32 pools). */
typedef struct {
    int64_t M;
    size_t moved, nmoved, kids, nkids, next;
} Frame;

typedef struct {
    int64_t delta;
    int32_t v;
} Kid;

/* Pools that grow by doubling; *cap counts elements. */
static int reserve(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    if (grow(p, nc, size) < 0)
        return -1;
    *cap = nc;
    return 0;
}

static const char decide_doc[] =
    "decide(tables, start, goal, ready0, mem, K, seconds, max_states)\n"
    "-> (heads or None, states, stopped, over)\n\n"
    "decision.decide's depth-first search under K (states as W*8 little-endian bytes):\n"
    "the macros of an order whose every step is at most K, or None; the states explored;\n"
    "why it stopped (\"\", \"time limit\", \"state limit\": max_states or the memory budget);\n"
    "the least step above K seen (1 << 62: none).";

static PyObject *decide(PyObject *self, PyObject *args) {
    PyObject *cap, *ostart, *ogoal, *oready0;
    long long mem, K, max_states;
    double seconds;
    if (!PyArg_ParseTuple(args, "OOOOLLdL", &cap, &ostart, &ogoal, &oready0, &mem, &K,
                          &seconds, &max_states))
        return NULL;
    Tables *T = PyCapsule_GetPointer(cap, "searchcore.Tables");
    if (!T)
        return NULL;
    const int W = T->W;
    const double deadline = now() + seconds;
    PyObject *result = NULL;
    Seen seen;
    int seen_ok = seen_init(&seen, W) == 0;
    u64 *buf = malloc((size_t)W * 8 * 8);
    Frame *fr = NULL;
    u64 *fbits = NULL;     /* per frame: state, ready */
    int32_t *mv = NULL;    /* macros run by free moves, frame after frame */
    Kid *kids = NULL;      /* children, frame after frame */
    size_t capfr = 0, capfb = 0, capmv = 0, capkid = 0, nmv = 0, nkid = 0, depth = 0;
    if (!seen_ok || !buf)
        FAIL_NOMEM;
    u64 *goal = buf, *S = buf + W, *R = buf + 2 * W, *S2 = buf + 3 * W, *nw = buf + 4 * W;
    u64 *r = buf + 5 * W, *ready0 = buf + 6 * W;
    if (bytes_to_bits(ostart, S, W, "start") < 0 || bytes_to_bits(ogoal, goal, W, "goal") < 0
        || bytes_to_bits(oready0, ready0, W, "ready0") < 0)
        goto done;
    memcpy(R, ready0, (size_t)W * 8);
    int64_t M = mem;
    const char *stopped = "";
    int found = 0, first = 1;
    int64_t over = (int64_t)1 << 62;  /* decision.OVER_NONE */
    for (;;) {
        /* enter (S, M, R): free moves under K, then the visited test (decision.enter) */
        if (!first) {
            if (depth == 0)
                break;  /* the start failed: proved */
            Frame *top = &fr[depth - 1];
            u64 *tS = fbits + (depth - 1) * 2 * W;
            if (equal_bits(tS, goal, W)) {
                found = 1;
                break;
            }
            if (top->next == top->nkids) {
                nmv = top->moved;
                nkid = top->kids;
                depth--;
                continue;
            }
            Kid k = kids[top->kids + top->next++];
            int64_t up, delta;
            step(T, tS, k.v, S, &up, &delta);
            if (seen_has(&seen, S))
                continue;
            newly_ready(T, goal, k.v, S, nw);
            for (int w = 0; w < W; w++)
                R[w] = tS[W + w] | nw[w];
            clrbit(R, k.v);
            M = top->M + k.delta;
        }
        size_t moved0 = nmv;
        if (reserve((void **)&mv, &capmv, nmv + (size_t)T->n + 1, sizeof(int32_t)) < 0)
            FAIL_NOMEM;
        nmv += (size_t)free_moves(T, goal, S, R, &M, K, R, r, S2, nw, mv + nmv);
        int from = 0;
        first = 0;
        if (seen_has(&seen, S)) {
            nmv = moved0;
            continue;
        }
        if (seen_add(&seen, S) < 0)
            FAIL_NOMEM;
        if (reserve((void **)&fr, &capfr, depth + 1, sizeof(Frame)) < 0 ||
            reserve((void **)&fbits, &capfb, (depth + 1) * 2 * W, 8) < 0)
            FAIL_NOMEM;
        Frame *f = &fr[depth];
        f->M = M;
        f->moved = moved0;
        f->nmoved = nmv - moved0;
        f->kids = nkid;
        f->next = 0;
        memcpy(fbits + depth * 2 * W, S, (size_t)W * 8);
        memcpy(fbits + depth * 2 * W + W, R, (size_t)W * 8);
        from = 0;
        memcpy(r, R, (size_t)W * 8);
        for (;;) {  /* children within K, by (resident change, op): insertion sort */
            int v = lowest(r, W, &from);
            if (v < 0)
                break;
            clrbit(r, v);
            int64_t up, delta;
            step(T, S, v, S2, &up, &delta);
            if (M + up > K) {
                if (M + up < over)
                    over = M + up;
                continue;
            }
            if (reserve((void **)&kids, &capkid, nkid + 1, sizeof(Kid)) < 0)
                FAIL_NOMEM;
            size_t j = nkid++;
            while (j > f->kids && kids[j - 1].delta > delta) {
                kids[j] = kids[j - 1];
                j--;
            }
            kids[j].delta = delta;
            kids[j].v = v;
        }
        f->nkids = nkid - f->kids;
        depth++;
        if ((seen.len & 15) == 0) {
            if (now() > deadline)
                stopped = "time limit";
            else if ((long long)seen.len > max_states ||
                     seen.cap * (size_t)W * 8 + seen.nslot * 4 > SEARCH_BYTES_LIMIT)
                stopped = "state limit";
            if (*stopped)
                break;
            if (PyErr_CheckSignals() < 0)
                goto done;
        }
    }
    PyObject *heads = Py_None;
    Py_INCREF(heads);
    if (found) {
        Py_DECREF(heads);
        heads = PyList_New(0);
        if (!heads)
            goto done;
        for (size_t d = 0; d < depth; d++) {
            const Frame *f = &fr[d];
            for (size_t i = 0; i < f->nmoved; i++) {
                PyObject *x = PyLong_FromLong(mv[f->moved + i]);
                if (!x || PyList_Append(heads, x) < 0) {
                    Py_XDECREF(x);
                    Py_DECREF(heads);
                    goto done;
                }
                Py_DECREF(x);
            }
            if (d + 1 < depth) {
                PyObject *x = PyLong_FromLong(kids[f->kids + f->next - 1].v);
                if (!x || PyList_Append(heads, x) < 0) {
                    Py_XDECREF(x);
                    Py_DECREF(heads);
                    goto done;
                }
                Py_DECREF(x);
            }
        }
    }
    result = Py_BuildValue("(NLsL)", heads, (long long)seen.len, stopped, (long long)over);
done:
    if (seen_ok)
        seen_free(&seen);
    free(buf); free(fr); free(fbits); free(mv); free(kids);
    return result;
}

/* ------------------------------------------------------------------------------------- */
/* The beam start (improve.beam_order), state for state                                   */

/* One candidate of the next layer: its state and ready macros live in the layer's arrays
 * at the same index; ``v`` and ``from`` (history node of the state it came from) make its
 * history node once it is kept. */
typedef struct {
    int64_t g, M;
    int32_t v, from;
    int32_t idx;      /* first-insertion order (Python's dict order) */
} BeamItem;

static int beam_less(const void *a, const void *b) {
    const BeamItem *x = a, *y = b;
    if (x->g != y->g) return x->g < y->g ? -1 : 1;
    if (x->M != y->M) return x->M < y->M ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

typedef struct {
    int W;
    size_t len, cap, nslot;
    u64 *st, *rd;     /* cap * W each: state, ready macros */
    BeamItem *it;
    u64 *hash;
    int32_t *slot;
} BeamLayer;

static int beam_layer_reserve(BeamLayer *L, size_t n) {
    if (n > L->cap) {
        size_t nc = L->cap ? L->cap : 256;
        while (nc < n) nc *= 2;
        if (grow((void **)&L->st, nc, (size_t)L->W * 8) < 0
            || grow((void **)&L->rd, nc, (size_t)L->W * 8) < 0
            || grow((void **)&L->it, nc, sizeof(BeamItem)) < 0
            || grow((void **)&L->hash, nc, sizeof(u64)) < 0)
            return -1;
        L->cap = nc;
    }
    if (2 * n > L->nslot) {
        size_t ns = L->nslot ? L->nslot : 512;
        while (ns < 2 * n) ns *= 2;
        int32_t *sl = malloc(ns * sizeof(int32_t));
        if (!sl) return -1;
        memset(sl, 0xff, ns * sizeof(int32_t));
        for (size_t i = 0; i < L->len; i++) {
            size_t j = (size_t)L->hash[i] & (ns - 1);
            while (sl[j] >= 0) j = (j + 1) & (ns - 1);
            sl[j] = (int32_t)i;
        }
        free(L->slot);
        L->slot = sl;
        L->nslot = ns;
    }
    return 0;
}

static void beam_layer_clear(BeamLayer *L) {
    L->len = 0;
    if (L->slot) memset(L->slot, 0xff, L->nslot * sizeof(int32_t));
}

static void beam_layer_free(BeamLayer *L) {
    free(L->st); free(L->rd); free(L->it); free(L->hash); free(L->slot);
}

static const char beam_doc[] =
    "beam(tables, start, goal, ready0, mem, width, seconds) -> (heads, worst) or None\n"
    "improve.beam_order's layers in C: the same states kept in the same order (ties by the\n"
    "order a state was first reached), so the same macros (heads, to be expanded) and the same\n"
    "maximum step; None when the time runs out first or the goal cannot be reached.";

static PyObject *beam(PyObject *self, PyObject *args) {
    PyObject *cap, *ostart, *ogoal, *oready0;
    long long mem, width;
    double seconds;
    if (!PyArg_ParseTuple(args, "OOOOLLd", &cap, &ostart, &ogoal, &oready0, &mem, &width,
                          &seconds))
        return NULL;
    Tables *T = PyCapsule_GetPointer(cap, "searchcore.Tables");
    if (!T) return NULL;
    if (width < 1) width = 1;
    const int W = T->W;
    double until = now() + seconds;
    PyObject *result = NULL;
    BeamLayer A = {0}, B = {0};
    A.W = B.W = W;
    u64 *goal = malloc((size_t)W * 8 * 3), *S2 = goal + W, *nw = goal + 2 * W;
    int32_t *hist = NULL;  /* history nodes: (v, previous node) pairs */
    size_t nh = 0, caph = 0;
    int32_t *node_of = NULL;  /* per kept state of the current layer: its history node */
    size_t capnode = 0;
    if (!goal || beam_layer_reserve(&A, 1) < 0) { PyErr_NoMemory(); goto done; }
    if (bytes_to_bits(ogoal, goal, W, "goal") < 0 || bytes_to_bits(ostart, A.st, W, "start") < 0
        || bytes_to_bits(oready0, A.rd, W, "ready0") < 0)
        goto done;
    A.len = 1;
    A.it[0] = (BeamItem){0, mem, -1, -1, 0};
    if (grow((void **)&node_of, 1, sizeof(int32_t)) < 0) { PyErr_NoMemory(); goto done; }
    capnode = 1;
    node_of[0] = -1;
    BeamLayer *cur = &A, *nxt = &B;
    while (!equal_bits(cur->st, goal, W)) {
        if (now() > until) { result = Py_None; Py_INCREF(result); goto done; }
        beam_layer_clear(nxt);
        for (size_t a = 0; a < cur->len; a++) {
            const u64 *S = cur->st + a * W, *ready = cur->rd + a * W;
            int64_t g = cur->it[a].g, M = cur->it[a].M;
            for (int w = 0; w < W; w++) {
                u64 x = ready[w];
                while (x) {
                    int v = w * 64 + __builtin_ctzll(x);
                    x &= x - 1;
                    int64_t up, delta;
                    step(T, S, v, S2, &up, &delta);
                    int64_t g2 = M + up > g ? M + up : g;
                    u64 h = hash_bits(S2, W);
                    size_t mask = nxt->nslot ? nxt->nslot - 1 : 0, j = (size_t)h & mask;
                    int32_t found = -1;
                    if (nxt->nslot)
                        for (;; j = (j + 1) & mask) {
                            int32_t i = nxt->slot[j];
                            if (i < 0) break;
                            if (nxt->hash[i] == h && equal_bits(nxt->st + (size_t)i * W, S2, W)) {
                                found = i;
                                break;
                            }
                        }
                    if (found >= 0 && nxt->it[found].g <= g2)
                        continue;
                    newly_ready(T, goal, v, S2, nw);
                    if (found < 0) {
                        if (beam_layer_reserve(nxt, nxt->len + 1) < 0) { PyErr_NoMemory(); goto done; }
                        found = (int32_t)nxt->len++;
                        memcpy(nxt->st + (size_t)found * W, S2, (size_t)W * 8);
                        nxt->hash[found] = h;
                        nxt->it[found].idx = found;
                        mask = nxt->nslot - 1;
                        j = (size_t)h & mask;
                        while (nxt->slot[j] >= 0) j = (j + 1) & mask;
                        nxt->slot[j] = found;
                    }
                    u64 *r2 = nxt->rd + (size_t)found * W;
                    for (int k = 0; k < W; k++) r2[k] = ready[k] | nw[k];
                    clrbit(r2, v);
                    nxt->it[found].g = g2;
                    nxt->it[found].M = M + delta;
                    nxt->it[found].v = v;
                    nxt->it[found].from = node_of[a];
                }
            }
        }
        if (!nxt->len) { result = Py_None; Py_INCREF(result); goto done; }
        qsort(nxt->it, nxt->len, sizeof(BeamItem), beam_less);
        size_t keep = nxt->len < (size_t)width ? nxt->len : (size_t)width;
        /* the kept items, in (g, M, first reached) order, become the current layer */
        if (beam_layer_reserve(cur, keep) < 0 || (keep > capnode
            && grow((void **)&node_of, keep, sizeof(int32_t)) < 0)) { PyErr_NoMemory(); goto done; }
        if (keep > capnode) capnode = keep;
        if (nh + keep > caph) {
            size_t nc = caph ? caph : 1024;
            while (nc < nh + keep) nc *= 2;
            if (grow((void **)&hist, nc, 2 * sizeof(int32_t)) < 0) { PyErr_NoMemory(); goto done; }
            caph = nc;
        }
        for (size_t k = 0; k < keep; k++) {
            const BeamItem *b = &nxt->it[k];
            memcpy(cur->st + k * W, nxt->st + (size_t)b->idx * W, (size_t)W * 8);
            memcpy(cur->rd + k * W, nxt->rd + (size_t)b->idx * W, (size_t)W * 8);
            cur->it[k] = *b;
            hist[2 * nh] = b->v;
            hist[2 * nh + 1] = b->from;
            node_of[k] = (int32_t)nh++;
        }
        cur->len = keep;
    }
    {
        PyObject *heads = PyList_New(0);
        if (!heads) goto done;
        for (int32_t h = node_of[0]; h >= 0; h = hist[2 * h + 1]) {
            PyObject *x = PyLong_FromLong(hist[2 * h]);
            if (!x || PyList_Append(heads, x) < 0) { Py_XDECREF(x); Py_DECREF(heads); goto done; }
            Py_DECREF(x);
        }
        if (PyList_Reverse(heads) < 0) { Py_DECREF(heads); goto done; }
        result = Py_BuildValue("(NL)", heads, (long long)cur->it[0].g);
    }
done:
    free(goal); free(hist); free(node_of);
    beam_layer_free(&A); beam_layer_free(&B);
    return result;
}


static PyMethodDef methods[] = {
    {"make_tables", make_tables, METH_VARARGS,
     "make_tables(n, W, mpred, shares, block, can_free, up, kept, succ_ptr, succ, in_ptr,\n"
     "            in_size, in_cptr, cons, al_ptr, al_size, al_cptr, al_c) -> capsule"},
    {"search", search, METH_VARARGS, search_doc},
    {"beam", beam, METH_VARARGS, beam_doc},
    {"decide", decide, METH_VARARGS, decide_doc},
    {"make_flow", make_flow, METH_VARARGS,
     "make_flow(n_nodes, tails, heads, caps, forcing_arcs, forcing_ops, out_arcs, big, base,"
     " gain)\n"
     "-> capsule: a bounds.StateClosure's network (see flow_bound)"},
    {"flow_bound", py_flow_bound, METH_VARARGS,
     "flow_bound(flow, state_bytes, W) -> StateClosure.bound(S) on the compiled flow"},
    {"flow_value", py_flow_value, METH_VARARGS,
     "flow_value(flow, state_bytes, out_bytes, W) -> max flow, S forced in, out forced out"},
    {"make_set_bounds", make_set_bounds, METH_VARARGS,
     "make_set_bounds(n, ops, down, up, root, W, memo_bytes) -> capsule: order_bound's n"
     " candidates"},
    {"set_bounds_flow", set_bounds_flow, METH_VARARGS,
     "set_bounds_flow(set_bounds, candidate, flow): the candidate's compiled closure flow"},
    {"set_bound", set_bound, METH_VARARGS,
     "set_bound(set_bounds, indices, above) -> (bound, placed sets): order_bound_work with"
     " PairTable.lower"},
    {"fast_peak", fast_peak, METH_VARARGS, FAST_PEAK_DOC},
    {"lite_tables", lite_tables, METH_VARARGS,
     "lite_tables(raw) -> fastread.read_lite's fields as tuples, or None when a read fails"},
    {"pack_tensor", pack_tensor, METH_VARARGS,
     "pack_tensor(builder, tensor, ndarray, fallback) -> offset: TensorT.Pack in C"},
    {"pack_operator", pack_operator, METH_VARARGS,
     "pack_operator(builder, operator, ndarray, fallback) -> offset: OperatorT.Pack in C"},
    {"full_tables", full_tables, METH_VARARGS,
     "full_tables(raw) -> per subgraph (tensors, operators): every field parse_model unpacks,"
     " as tuples, or None when a read fails"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_searchcore",
    "The compiled loop of scheduler.search (see searchcore.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__searchcore(void) { return PyModule_Create(&module); }
