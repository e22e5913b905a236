/*
 * What the two translation units of the _searchcore extension share: the compiled search
 * loop and closure flows (_searchcore.c) and peak_memory's compiled path (_fastpeak.c),
 * which raises its floor with closure bounds on the same maximum flow.
 */
#ifndef TFLITE_REORDER_SEARCHCORE_H
#define TFLITE_REORDER_SEARCHCORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef uint64_t u64;

/* A hash of W words (the search's state table, the set bounds' flow memo). */
static inline u64 hash_bits(const u64 *s, int W) {
    u64 h = 0x9E3779B97F4A7C15ull;
    for (int w = 0; w < W; w++) {
        u64 x = s[w] + 0x9E3779B97F4A7C15ull * (u64)(w + 1);
        x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 27; x *= 0x94D049BB133111EBull;
        x ^= x >> 31;
        h = (h ^ x) * 0x100000001B3ull;
    }
    return h ^ (h >> 29);
}

/* The flow network of one bounds.StateClosure, as that class built it: node 0 = source,
 * node 1 = sink, forward arc i from tails[i] to heads[i] with capacity caps[i]; forcing an
 * op into the closure sets its forcing arc's capacity to ``big``. bound(S) = base - (gain -
 * max flow), the same arithmetic as StateClosure.bound. The flow is Dinic's algorithm; a
 * maximum flow's value is unique, so the bound is the one OR-tools computes. */
typedef struct {
    int nn, na;               /* nodes, arcs (forward and reverse) */
    int32_t *head;            /* per arc: its end node */
    int64_t *cap0, *cap;      /* per arc: capacity unforced, residual capacity */
    int32_t *adj_ptr, *adj;   /* CSR: the arcs leaving each node */
    int nf;
    int32_t *f_arc, *f_op;    /* forcing arcs (arc index) and their ops */
    int32_t *o_arc;           /* per forcing arc: its op's forcing-out arc (op -> sink) */
    int64_t big, base, gain;
    int32_t *level, *it, *queue, *path;
    uint8_t *dead;            /* per node: forced into the closure (merged with the source) */
} Flow;

enum { FLOW_OK = 0, FLOW_NO_MEMORY = 1, FLOW_BAD_ARC = 2 };

/* The arcs and node tables of f (see flow_arcs in _searchcore.c); f's other fields are the
 * caller's. The value of a maximum flow from node 0 to node 1 on f->cap (Dinic), nodes
 * marked in f->dead never entered. */
int flow_arcs(Flow *f, int nn, int64_t m, const int32_t *tails, const int32_t *heads,
              const int64_t *caps);
int64_t flow_max(Flow *f);
/* The maximum flow with the ops of S forced in and those of ``out`` forced out (bits below
 * nbits; ``out`` may be NULL): StateClosure.bound(S, out) before its arithmetic. */
int64_t flow_value(Flow *f, const u64 *S, const u64 *out, int nbits);
void flow_free(Flow *f);

/* _fastpeak.c: the module function fast_peak (fastpeak.py) and its docstring. */
PyObject *fast_peak(PyObject *self, PyObject *args);
extern const char FAST_PEAK_DOC[];
/* lite_tables(raw): fastread.read_lite's fields as tuples, or None (fastread reads them). */
PyObject *lite_tables(PyObject *self, PyObject *args);
/* full_tables(raw): every tensor and operator field parse_model unpacks, or None. */
PyObject *full_tables(PyObject *self, PyObject *args);

/* _setbound.c: bounds.order_bound_work with PairTable.lower over compiled flows. */
PyObject *make_set_bounds(PyObject *self, PyObject *args);
PyObject *set_bounds_flow(PyObject *self, PyObject *args);
PyObject *set_bound(PyObject *self, PyObject *args);

/* _fastwrite.c: TensorT.Pack / OperatorT.Pack on flatbuffer_io's builder, the same bytes. */
PyObject *pack_tensor(PyObject *self, PyObject *args);
PyObject *pack_operator(PyObject *self, PyObject *args);

#endif
