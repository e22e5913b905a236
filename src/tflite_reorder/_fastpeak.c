/*
 * peak_memory's compiled path (fastpeak.py), the function fast_peak of the _searchcore
 * extension (this file is its second translation unit), and fastread's field reads in C
 * (lite_tables, at the end). fast_peak: a .tflite read straight from its
 * flatbuffer tables into flat arrays, its operator graph built on them, the stored order's
 * peak and the minimum peak found by an exact best-first search, all without one Python
 * object per tensor or operator.
 *
 * It answers only what it can answer exactly as the general path (candidate.read_safe_graph
 * + scheduling.peak_of_graph) does, and says why not otherwise (a short reason string): the
 * caller then runs the general path, which also gives the errors for bad input. So every
 * check here is an acceptance test, stricter than the general reader's: anything unusual
 * (control flow other than a tree of calls, external data, dynamic dimensions, an index
 * out of range, a tensor written twice or written holding constant data, reads of memory
 * nothing writes, a stored order that is not topological, ...) is declined, never reported.
 *
 * No rule of the package lives here. What depends on one arrives as a table computed by the
 * rule's Python home (fastpeak.py): bytes per element per type code (dtypes.TYPE_SIZES), the
 * constant-size check's element sizes (dtypes.FIXED_SIZE), the arena alignment
 * (dtypes.ARENA_ALIGNMENT), which builtin codes and tensor types keep their stored relative
 * order (graph.SIDE_EFFECT_OPS, custom and unknown builtins; graph.STATE_TYPES) and which
 * builtins the general path treats specially (control flow, the SPACE_TO_BATCH_ND repair)
 * and which have a shape rule or are repaired (shapes.CHECKED_OPS, candidate.REPAIRED_OPS:
 * with any of them it declines unless the caller has run fastpeak's Python pass and passes
 * its results: the inferred sizes of tensors stored with other shapes, and the operators and
 * tensors the padding repair adds, as edits applied while reading).
 * Lifetimes are memory.Problem's, as scheduler._step computes steps: at op v everything
 * resident + v's outputs; then its read-or-pinned outputs stay and its inputs whose every
 * reader has run die (pinned subgraph outputs never do). No in-place sharing (the caller
 * asks the general path for inplace=True).
 *
 * The search: states are downsets S (bitsets of W 64-bit words); key = max(peak so far,
 * floor), where floor = max(bytes of the subgraph inputs, every op's static bound: its own
 * inputs and outputs plus the tensors made before it and read after it in every order,
 * bounds.static_bounds); best-first on (key, deepest first); free moves as
 * scheduler.search applies them (a ready op whose kept outputs are no larger than the inputs
 * dying at it and whose step stays under the key runs at once); pruned at the best of the
 * stored and the step-greedy orders' peaks. The first goal taken off the heap has the
 * minimum key, which is the minimum peak (floor <= optimum); if none is taken below the
 * incumbent, the incumbent is optimal. The segments between cut ops are searched apart and
 * the floor is raised by closure bounds when one needs many states (solve, raise_floor).
 * Over the state or time limit it declines.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "_searchcore.h"

/* ------------------------------------------------------------------------------------- */
/* Bounds-checked flatbuffer reads (every failure declines: the general reader reports)    */

typedef struct {
    const uint8_t *b;
    int64_t n;
    const char *why; /* first reason for declining, or NULL */
} Fb;

#define DECLINE(fb, msg) do { if (!(fb)->why) (fb)->why = (msg); return 0; } while (0)

static inline int fb_has(Fb *fb, int64_t pos, int64_t len) {
    if (pos < 0 || len < 0 || pos + len > fb->n) DECLINE(fb, "corrupt flatbuffer");
    return 1;
}
static inline uint32_t u32at(const Fb *fb, int64_t p) {
    const uint8_t *b = fb->b + p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static inline uint16_t u16at(const Fb *fb, int64_t p) {
    return (uint16_t)(fb->b[p] | (fb->b[p + 1] << 8));
}
static inline uint64_t u64at(const Fb *fb, int64_t p) {
    return (uint64_t)u32at(fb, p) | ((uint64_t)u32at(fb, p + 4) << 32);
}

typedef struct {
    int64_t pos;
    int64_t vt;
    int nslots;
} Tab;

/* The table at pos: its vtable (fastread._Tables.fields' checks). */
static int fb_table(Fb *fb, int64_t pos, Tab *t) {
    if (!fb_has(fb, pos, 4)) return 0;
    int64_t vt = pos - (int32_t)u32at(fb, pos);
    if (!fb_has(fb, vt, 4)) return 0;
    int size = u16at(fb, vt);
    if (size < 4 || size % 2 || vt + size > fb->n) DECLINE(fb, "corrupt flatbuffer");
    t->pos = pos;
    t->vt = vt;
    t->nslots = (size - 4) / 2;
    return 1;
}
static inline int slot_off(const Fb *fb, const Tab *t, int slot) {
    return slot < t->nslots ? u16at(fb, t->vt + 4 + 2 * slot) : 0;
}
/* A scalar field (default when absent); width in bytes. */
static int fb_scalar(Fb *fb, const Tab *t, int slot, int width, uint64_t dflt, uint64_t *out) {
    int off = slot_off(fb, t, slot);
    if (!off) { *out = dflt; return 1; }
    if (!fb_has(fb, t->pos + off, width)) return 0;
    int64_t p = t->pos + off;
    *out = width == 1 ? fb->b[p] : width == 2 ? u16at(fb, p) : width == 4 ? u32at(fb, p)
                                                                          : u64at(fb, p);
    return 1;
}
/* Where an offset field points (-1 when absent). */
static int fb_target(Fb *fb, const Tab *t, int slot, int64_t *out) {
    int off = slot_off(fb, t, slot);
    if (!off) { *out = -1; return 1; }
    int64_t at = t->pos + off;
    if (!fb_has(fb, at, 4)) return 0;
    *out = at + u32at(fb, at);
    return 1;
}
/* A vector: its length and first element; elsize bytes per element. Absent: length 0. */
static int fb_vector(Fb *fb, int64_t vec, int elsize, int64_t *len, int64_t *first) {
    if (vec < 0) { *len = 0; *first = 0; return 1; }
    if (!fb_has(fb, vec, 4)) return 0;
    *len = u32at(fb, vec);
    *first = vec + 4;
    return fb_has(fb, vec + 4, *len * elsize);
}
static int fb_field_vector(Fb *fb, const Tab *t, int slot, int elsize, int64_t *len,
                           int64_t *first) {
    int64_t vec;
    if (!fb_target(fb, t, slot, &vec)) return 0;
    return fb_vector(fb, vec, elsize, len, first);
}
/* A string field, bounds-checked only (fastread reads names and custom codes). */
static int fb_string(Fb *fb, const Tab *t, int slot) {
    int64_t len, first;
    return fb_field_vector(fb, t, slot, 1, &len, &first);
}
/* Element i of a vector of tables. */
static int fb_elem_table(Fb *fb, int64_t first, int64_t i, Tab *t) {
    int64_t at = first + 4 * i;
    return fb_table(fb, at + u32at(fb, at), t);
}
static inline int32_t i32elem(const Fb *fb, int64_t first, int64_t i) {
    return (int32_t)u32at(fb, first + 4 * i);
}

/* ------------------------------------------------------------------------------------- */
/* The rules' tables (fastpeak.py) and the graph                                            */

typedef struct {
    const int32_t *type_size;   /* [256] bytes per element (0: not an arena type) */
    const int32_t *fixed_size;  /* [256] constant-size check's element bytes (0: unchecked) */
    const uint8_t *type_state;  /* [256] 1: tensors of this type order their ops */
    const uint8_t *op_flags;    /* per builtin code: 1 stateful, 2 decline, 4 shape rule,
                                 * 8 control flow (nests subgraphs) */
    const uint8_t *call_info;   /* per builtin code: the options type naming its callees,
                                 * how many (graph.CONTROL_FLOW; slots 0.. of that table) */
    int64_t n_op_flags;         /* codes beyond: stateful (unknown builtins) */
    int64_t version, align, max_arena;
    int64_t max_tensors, max_ops, max_buffers, max_entries;
} Rules;

enum { OPF_STATEFUL = 1, OPF_DECLINE = 2, OPF_SHAPE_RULE = 4, OPF_CALLS = 8 };
#define MAX_SUBGRAPHS 1024 /* the compiled path declines more */
static const char NEEDS_SHAPES[] = "shape inference needed";

typedef struct {
    int nt, n, W;
    int64_t *nbytes;   /* per tensor */
    uint8_t *in_arena, *is_input, *pinned, *state, *constant; /* per tensor */
    int32_t *producer; /* per tensor, -1 none */
    int32_t *in_ptr, *ins;   /* CSR per op: inputs, -1 removed, first occurrence kept */
    int32_t *out_ptr, *outs; /* CSR per op: outputs, duplicates removed */
    int32_t *io_in;    /* deduplicated subgraph inputs */
    int n_io_in;
    int64_t unplaced;  /* largest arena tensor no op or subgraph list refers to */
    int shape_rules;   /* some op has a shape rule: inference might change a shape */
    int32_t *call_ptr, *calls; /* CSR per op: the subgraphs it nests, in marking order */
} Graph;

/* What every subgraph's read shares: the model's tables and the reader's running totals
 * (its limits are for all subgraphs together, as flatbuffer_io counts them). */
typedef struct {
    int64_t n_codes, codes0, n_sub, sub0, n_buf, buf0;
    int64_t *held;        /* per buffer: inline data bytes */
    uint8_t *code_flags;  /* per operator code: its builtin's flags */
    int32_t *code_builtin;
    int64_t tensors, ops, entries, arena;
} ModelTabs;

static void model_free(ModelTabs *m) {
    free(m->held); free(m->code_flags); free(m->code_builtin);
    memset(m, 0, sizeof *m);
}

/* Operators a repair adds (fastpeak.py builds them from rewrites.padding's plan): each is
 * run just before stored op `before`, whose inputs become `repl` (n_repl < 0: unchanged).
 * Its tensors index the stored ones and the added ones (the stored count on). */
typedef struct {
    int64_t before, code, n_ins, n_outs, n_repl;
    const int64_t *ins, *outs, *repl;
} Edit;

typedef struct {
    Edit *e;
    int64_t n;
    const int64_t *new_t; /* per added tensor: type code, elements */
    int64_t n_new;
    const int64_t *resized; /* stored tensors of other (inferred) shapes: index, elements */
    int64_t n_resized;
} Edits;

/* Parse records [before, code, n_in, ins..., n_out, outs..., n_repl, repl...]; 0 when
 * malformed (befores must increase). */
static int parse_edits(const int64_t *a, int64_t len, Edits *E) {
    int64_t n = 0, at = 0;
    for (int pass = 0; pass < 2; pass++) {
        at = 0;
        int64_t k = 0, last = -1;
        while (at < len) {
            if (at + 3 > len) return 0;
            Edit e = {a[at], a[at + 1], a[at + 2], 0, 0, NULL, NULL, NULL};
            if (e.before <= last || e.n_ins < 0 || at + 3 + e.n_ins + 1 > len) return 0;
            last = e.before;
            e.ins = a + at + 3;
            at += 3 + e.n_ins;
            e.n_outs = a[at];
            if (e.n_outs < 0 || at + 1 + e.n_outs + 1 > len) return 0;
            e.outs = a + at + 1;
            at += 1 + e.n_outs;
            e.n_repl = a[at];
            if (at + 1 + (e.n_repl > 0 ? e.n_repl : 0) > len) return 0;
            e.repl = a + at + 1;
            at += 1 + (e.n_repl > 0 ? e.n_repl : 0);
            if (pass) E->e[k] = e;
            k++;
        }
        if (!pass) {
            n = k;
            E->e = malloc((n + 1) * sizeof *E->e);
            if (!E->e) return 0;
        }
    }
    E->n = n;
    return 1;
}

/* An operator's input or output list: a flatbuffer vector or an edit's array. */
typedef struct {
    const Fb *fb;
    int64_t first;
    const int64_t *arr;
    int64_t len, bound; /* entries; indices must be below bound */
} IoList;

static inline int64_t io_at(const IoList *l, int64_t i) {
    return l->arr ? l->arr[i] : i32elem(l->fb, l->first, i);
}

static void graph_free(Graph *g) {
    free(g->nbytes); free(g->in_arena); free(g->is_input); free(g->pinned); free(g->state);
    free(g->constant);
    free(g->producer); free(g->in_ptr); free(g->ins); free(g->out_ptr); free(g->outs);
    free(g->io_in); free(g->call_ptr); free(g->calls);
}

static int64_t align_up(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

/* The model's own tables into m (header, version, buffers, operator codes); 0 (with
 * fb->why) when declined. */
static int read_model(Fb *fb, const Rules *R, ModelTabs *m) {
    memset(m, 0, sizeof *m);
    if (fb->n < 8 || memcmp(fb->b + 4, "TFL3", 4) != 0) DECLINE(fb, "not a TFLite flatbuffer");
    int64_t root_pos = u32at(fb, 0);
    if (root_pos < 8 || root_pos + 4 > fb->n) DECLINE(fb, "corrupt flatbuffer");
    Tab root;
    uint64_t version;
    if (!fb_table(fb, root_pos, &root) || !fb_scalar(fb, &root, 0, 4, 0, &version)) return 0;
    if ((int64_t)version != R->version) DECLINE(fb, "schema version");
    int64_t n_md, md0;
    if (!fb_field_vector(fb, &root, 1, 4, &m->n_codes, &m->codes0) ||
        !fb_field_vector(fb, &root, 2, 4, &m->n_sub, &m->sub0) ||
        !fb_field_vector(fb, &root, 4, 4, &m->n_buf, &m->buf0) ||
        !fb_field_vector(fb, &root, 6, 4, &n_md, &md0))
        return 0;
    if (m->n_sub < 1) DECLINE(fb, "no subgraphs");
    if (m->n_sub > MAX_SUBGRAPHS) DECLINE(fb, "too many subgraphs");
    if (m->n_buf > R->max_buffers) DECLINE(fb, "too many buffers");
    for (int64_t k = 0; k < n_md; k++) { /* metadata buffers in range (flatbuffer_io) */
        Tab md;
        uint64_t b;
        if (!fb_elem_table(fb, md0, k, &md) || !fb_scalar(fb, &md, 1, 4, 0, &b) ||
            !fb_string(fb, &md, 0))
            return 0;
        if ((int64_t)b >= m->n_buf) DECLINE(fb, "index out of range");
    }
    /* buffers: which hold data (inline only: data kept after the flatbuffer declines) */
    m->held = calloc(m->n_buf > 0 ? m->n_buf : 1, sizeof *m->held);
    m->code_flags = calloc(m->n_codes > 0 ? m->n_codes : 1, 1);
    m->code_builtin = calloc(m->n_codes > 0 ? m->n_codes : 1, sizeof *m->code_builtin);
    if (!m->held || !m->code_flags || !m->code_builtin) { model_free(m); DECLINE(fb, "out of memory"); }
    for (int64_t k = 0; k < m->n_buf; k++) {
        Tab bt;
        int64_t len, first;
        uint64_t off, bsize;
        if (!fb_elem_table(fb, m->buf0, k, &bt) ||
            !fb_field_vector(fb, &bt, 0, 1, &len, &first) ||
            !fb_scalar(fb, &bt, 1, 8, 0, &off) || !fb_scalar(fb, &bt, 2, 8, 0, &bsize))
            { model_free(m); return 0; }
        if (off > 1) { model_free(m); DECLINE(fb, "external buffer data"); }
        m->held[k] = len;
    }
    /* operator codes -> flags */
    for (int64_t k = 0; k < m->n_codes; k++) {
        Tab ct;
        uint64_t dep, builtin, cver;
        if (!fb_elem_table(fb, m->codes0, k, &ct) || !fb_scalar(fb, &ct, 0, 1, 0, &dep) ||
            !fb_scalar(fb, &ct, 3, 4, 0, &builtin) || !fb_scalar(fb, &ct, 2, 4, 1, &cver) ||
            !fb_string(fb, &ct, 1))
            { model_free(m); return 0; }
        int64_t b = (int32_t)(uint32_t)builtin, d = (int8_t)(uint8_t)dep;
        int64_t code = b > d ? b : d;
        int known = code >= 0 && code < R->n_op_flags;
        m->code_flags[k] = known ? R->op_flags[code] : OPF_STATEFUL;
        m->code_builtin[k] = known ? (int32_t)code : -1;
    }
    return 1;
}

/* The subgraphs control-flow op `ot` (builtin `code`) nests: its options' index fields if
 * the table is of the type its parser reads, else zeros (as the runtimes' parsers keep
 * zeroed parameters: graph._calls). n entries into out; 0 when the table is corrupt. */
static int read_calls(Fb *fb, const Rules *R, const Tab *ot, int32_t code, int n,
                      int32_t *out) {
    uint64_t otype;
    int64_t opt;
    if (!fb_scalar(fb, ot, 3, 1, 0, &otype) || !fb_target(fb, ot, 4, &opt)) return 0;
    for (int i = 0; i < n; i++) out[i] = 0;
    if (otype == 0 || otype != R->call_info[2 * code] || opt < 0) return 1;
    Tab o;
    if (!fb_table(fb, opt, &o)) return 0;
    for (int i = 0; i < n; i++) {
        uint64_t x;
        if (!fb_scalar(fb, &o, i, 4, 0, &x)) return 0;
        out[i] = (int32_t)(uint32_t)x;
    }
    return 1;
}

/* Subgraph s of the model into g (E: the Python pass's edits, subgraph 0's); 0 (with
 * fb->why) when declined. */
static int read_graph(Fb *fb, const Rules *R, const Edits *E, ModelTabs *mt, int64_t s,
                      Graph *g) {
    memset(g, 0, sizeof *g);
    const int64_t n_codes = mt->n_codes, n_buf = mt->n_buf, n_sub = mt->n_sub;
    const int64_t *held = mt->held;
    const uint8_t *code_flags = mt->code_flags;
    Tab sg;
    int64_t nt, t0, n_in, in0, n_out, out0, n, op0;
    if (!fb_elem_table(fb, mt->sub0, s, &sg) || !fb_field_vector(fb, &sg, 0, 4, &nt, &t0) ||
        !fb_field_vector(fb, &sg, 1, 4, &n_in, &in0) ||
        !fb_field_vector(fb, &sg, 2, 4, &n_out, &out0) ||
        !fb_field_vector(fb, &sg, 3, 4, &n, &op0) || !fb_string(fb, &sg, 4))
        return 0;
    mt->tensors += nt;
    mt->ops += n;
    if (mt->tensors > R->max_tensors || mt->ops > R->max_ops)
        DECLINE(fb, "too many tensors or operators");
    if (n == 0) DECLINE(fb, "no operators");
    int64_t nt_st = nt, n_st = n; /* stored tensors and ops; the edits' come after */
    if (E->n && E->e[E->n - 1].before >= n_st) DECLINE(fb, "edit out of range");
    nt += E->n_new;
    n += E->n;
    g->nt = (int)nt;
    g->n = (int)n;
    g->W = (int)((n + 63) / 64);

    g->nbytes = calloc(nt + 1, sizeof *g->nbytes);
    g->in_arena = calloc(nt + 1, 1);
    g->is_input = calloc(nt + 1, 1);
    g->pinned = calloc(nt + 1, 1);
    g->state = calloc(nt + 1, 1);
    g->constant = calloc(nt + 1, 1);
    g->producer = malloc((nt + 1) * sizeof *g->producer);
    g->in_ptr = calloc(n + 1, sizeof *g->in_ptr);
    g->out_ptr = calloc(n + 1, sizeof *g->out_ptr);
    g->io_in = malloc((n_in + 1) * sizeof *g->io_in);
    uint8_t *referenced = calloc(nt + 1, 1);
    int32_t *seen = malloc((nt + 1) * sizeof *seen); /* op that last listed a tensor */
    int64_t *src = malloc((n + 1) * sizeof *src); /* per op: stored op j, or -1 - edit */
    int64_t *repl = malloc((n_st + 1) * sizeof *repl); /* per stored op: its edit or -1 */
    int64_t *elems_of = malloc((nt_st + 1) * sizeof *elems_of); /* resized: elements, or -1 */
    int ok = g->nbytes && g->in_arena && g->is_input && g->pinned && g->state && g->constant &&
             g->producer &&
             g->in_ptr && g->out_ptr && g->io_in && referenced && seen && src && repl && elems_of;
    int64_t entries = 0, arena_total = 0;
    if (!ok) { fb->why = "out of memory"; goto fail; }

    for (int64_t t = 0; t < nt_st; t++) elems_of[t] = -1;
    for (int64_t k = 0; k < E->n_resized; k++) {
        int64_t t = E->resized[2 * k], e = E->resized[2 * k + 1];
        if (t < 0 || t >= nt_st || e < 0 || e > ((int64_t)1 << 40)) { fb->why = "bad edit"; goto fail; }
        elems_of[t] = e;
    }
    for (int64_t j = 0, k = 0, v = 0; j < n_st; j++) {
        repl[j] = -1;
        if (k < E->n && E->e[k].before == j) { repl[j] = k; src[v++] = -1 - k++; }
        src[v++] = j;
    }

    /* tensors */
    for (int64_t t = 0; t < nt_st; t++) {
        Tab tt;
        int64_t rank, dims, sp, ext;
        uint64_t type, buffer, var, external;
        if (!fb_elem_table(fb, t0, t, &tt) || !fb_field_vector(fb, &tt, 0, 4, &rank, &dims) ||
            !fb_scalar(fb, &tt, 1, 1, 0, &type) || !fb_scalar(fb, &tt, 2, 4, 0, &buffer) ||
            !fb_scalar(fb, &tt, 5, 1, 0, &var) || !fb_target(fb, &tt, 6, &sp) ||
            !fb_scalar(fb, &tt, 10, 4, 0, &external) || !fb_string(fb, &tt, 3))
            goto fail;
        (void)ext;
        entries += rank;
        if (external) { fb->why = "external tensor data"; goto fail; }
        if ((int8_t)type < 0) { fb->why = "unknown tensor type"; goto fail; }
        if ((int64_t)buffer >= (n_buf > 1 ? n_buf : 1)) { fb->why = "index out of range"; goto fail; }
        int64_t elems = 1, neg = 0, zero = 0;
        for (int64_t i = 0; i < rank; i++) {
            int32_t d = i32elem(fb, dims, i);
            if (d < 0) neg = 1;
            else if (d == 0) zero = 1;
            else if (elems <= ((int64_t)1 << 40)) elems *= d;
        }
        if (neg) { fb->why = "dynamic dimension"; goto fail; }
        if (elems > ((int64_t)1 << 40)) { fb->why = "tensor too large"; goto fail; }
        int64_t data = (buffer > 0 && (int64_t)buffer < n_buf) ? held[buffer] : 0;
        int fixed = R->fixed_size[type];
        if (data > 0 && fixed && sp < 0 && (zero ? 0 : elems) * fixed != data) {
            fb->why = "constant size";
            goto fail;
        }
        int64_t nbytes = zero ? 0 : elems * R->type_size[type];
        if (elems_of[t] >= 0) nbytes = elems_of[t] * R->type_size[type]; /* true shape */
        g->nbytes[t] = nbytes;
        g->in_arena[t] = data == 0 && !var && nbytes > 0;
        g->constant[t] = data > 0;
        g->state[t] = R->type_state[type] || var;
        g->producer[t] = -1;
        seen[t] = -1;
        if (g->in_arena[t]) arena_total += align_up(nbytes, R->align);
    }
    for (int64_t t = nt_st; t < nt; t++) { /* the edits' tensors: activations */
        int64_t type = E->new_t[2 * (t - nt_st)], elems = E->new_t[2 * (t - nt_st) + 1];
        if (type < 0 || type > 255 || elems < 0 || elems > ((int64_t)1 << 40)) {
            fb->why = "bad edit"; goto fail;
        }
        g->nbytes[t] = elems * R->type_size[type];
        g->in_arena[t] = g->nbytes[t] > 0;
        g->state[t] = R->type_state[type];
        g->producer[t] = -1;
        seen[t] = -1;
        if (g->in_arena[t]) arena_total += align_up(g->nbytes[t], R->align);
    }
    mt->arena += arena_total;
    if (mt->arena > R->max_arena) { fb->why = "arena past 32 bits"; goto fail; }

    /* operators: the first pass sizes the CSR lists */
    int64_t n_ins = 0, n_outs = 0, n_calls = 0;
    for (int64_t k = 0; k < E->n; k++)
        n_ins += E->e[k].n_ins + (E->e[k].n_repl > 0 ? E->e[k].n_repl : 0),
        n_outs += E->e[k].n_outs;
    for (int64_t v = 0; v < n_st; v++) {
        Tab ot;
        int64_t a, a0, b, b0, c, c0, opt;
        uint64_t otype, opcode;
        if (!fb_elem_table(fb, op0, v, &ot) || !fb_field_vector(fb, &ot, 1, 4, &a, &a0) ||
            !fb_field_vector(fb, &ot, 2, 4, &b, &b0) || !fb_field_vector(fb, &ot, 8, 4, &c, &c0) ||
            !fb_scalar(fb, &ot, 3, 1, 0, &otype) || !fb_target(fb, &ot, 4, &opt) ||
            !fb_scalar(fb, &ot, 0, 4, 0, &opcode))
            goto fail;
        if ((int64_t)opcode < n_codes && (code_flags[opcode] & OPF_CALLS))
            n_calls += R->call_info[2 * mt->code_builtin[opcode] + 1];
        n_ins += repl[v] >= 0 && E->e[repl[v]].n_repl >= 0 ? 0 : a;
        n_outs += b;
        entries += a + b + c;
        for (int64_t i = 0; i < c; i++) {
            int32_t x = i32elem(fb, c0, i);
            if (x < -1 || x >= nt_st) { fb->why = "index out of range"; goto fail; }
        }
    }
    mt->entries += entries;
    if (mt->entries > R->max_entries) { fb->why = "too many vector entries"; goto fail; }
    g->ins = malloc((n_ins + 1) * sizeof *g->ins);
    g->outs = malloc((n_outs + 1) * sizeof *g->outs);
    g->call_ptr = calloc(n + 1, sizeof *g->call_ptr);
    g->calls = malloc((n_calls + 1) * sizeof *g->calls);
    uint8_t *stateful = calloc(n + 1, 1);
    if (!g->ins || !g->outs || !g->call_ptr || !g->calls || !stateful) {
        free(stateful); fb->why = "out of memory"; goto fail;
    }
    for (int64_t v = 0; v < n; v++) {
        IoList in = {fb, 0, NULL, 0, nt_st}, out = {fb, 0, NULL, 0, nt_st};
        uint8_t flags;
        if (src[v] >= 0) {
            Tab ot;
            uint64_t opcode;
            int64_t j = src[v];
            if (!fb_elem_table(fb, op0, j, &ot) || !fb_scalar(fb, &ot, 0, 4, 0, &opcode) ||
                !fb_field_vector(fb, &ot, 1, 4, &in.len, &in.first) ||
                !fb_field_vector(fb, &ot, 2, 4, &out.len, &out.first))
                { free(stateful); goto fail; }
            if ((int64_t)opcode >= n_codes) { free(stateful); fb->why = "index out of range"; goto fail; }
            flags = code_flags[opcode];
            if (flags & OPF_CALLS) {
                int32_t code = mt->code_builtin[opcode], *to = g->calls + g->call_ptr[v];
                int nc = R->call_info[2 * code + 1];
                if (!read_calls(fb, R, &ot, code, nc, to)) { free(stateful); goto fail; }
                for (int i = 0; i < nc; i++)
                    if (to[i] <= 0 || to[i] >= n_sub) { /* 0: the root (recursion) */
                        free(stateful); fb->why = "control flow the general path refuses";
                        goto fail;
                    }
                g->call_ptr[v + 1] = g->call_ptr[v] + nc;
            } else {
                g->call_ptr[v + 1] = g->call_ptr[v];
            }
            const Edit *e = repl[j] >= 0 ? &E->e[repl[j]] : NULL;
            if (e && e->n_repl >= 0) { in.arr = e->repl; in.len = e->n_repl; in.bound = nt; }
        } else {
            const Edit *e = &E->e[-1 - src[v]];
            if (e->code < 0 || e->code >= R->n_op_flags) { free(stateful); fb->why = "bad edit"; goto fail; }
            flags = R->op_flags[e->code];
            g->call_ptr[v + 1] = g->call_ptr[v];
            if (flags & OPF_CALLS) { free(stateful); fb->why = "bad edit"; goto fail; }
            in.arr = e->ins; in.len = e->n_ins; in.bound = nt;
            out.arr = e->outs; out.len = e->n_outs; out.bound = nt;
        }
        if (flags & OPF_DECLINE) { free(stateful); fb->why = "operator the general path rewrites or nests"; goto fail; }
        int st = flags & OPF_STATEFUL;
        if (flags & OPF_SHAPE_RULE) g->shape_rules = 1;
        int32_t k = g->in_ptr[v];
        for (int64_t i = 0; i < in.len; i++) {
            int64_t x = io_at(&in, i);
            if (x < -1 || x >= in.bound) { free(stateful); fb->why = "index out of range"; goto fail; }
            if (x < 0 || seen[x] == (int32_t)v) continue;
            seen[x] = (int32_t)v;
            g->ins[k++] = (int32_t)x;
            referenced[x] = 1;
            st |= g->state[x];
        }
        g->in_ptr[v + 1] = k;
        int32_t m = g->out_ptr[v];
        for (int64_t i = 0; i < out.len; i++) {
            int64_t x = io_at(&out, i);
            if (x < 0 || x >= out.bound) { free(stateful); fb->why = "bad output index"; goto fail; }
            if (seen[x] == (int32_t)v + (int32_t)n + 1) continue; /* duplicate output */
            if (seen[x] == (int32_t)v) { free(stateful); fb->why = "op reads its own output"; goto fail; }
            seen[x] = (int32_t)v + (int32_t)n + 1;
            if (g->producer[x] >= 0) { free(stateful); fb->why = "tensor written twice"; goto fail; }
            if (g->constant[x]) { free(stateful); fb->why = "an operator writes a constant"; goto fail; }
            g->producer[x] = (int32_t)v;
            g->outs[m++] = (int32_t)x;
            referenced[x] = 1;
            st |= g->state[x];
        }
        g->out_ptr[v + 1] = m;
        stateful[v] = (uint8_t)(st != 0);
    }
    /* subgraph inputs and outputs */
    int k = 0;
    for (int64_t i = 0; i < n_in; i++) {
        int32_t x = i32elem(fb, in0, i);
        if (x < 0 || x >= nt_st) { free(stateful); fb->why = "bad subgraph input"; goto fail; }
        referenced[x] = 1;
        if (g->is_input[x]) continue;
        g->is_input[x] = 1;
        g->io_in[k++] = x;
        if (g->producer[x] >= 0) { free(stateful); fb->why = "a subgraph input is written"; goto fail; }
    }
    g->n_io_in = k;
    for (int64_t i = 0; i < n_out; i++) {
        int32_t x = i32elem(fb, out0, i);
        if (x < 0 || x >= nt_st) { free(stateful); fb->why = "bad subgraph output"; goto fail; }
        referenced[x] = 1;
        g->pinned[x] = 1;
        if (g->in_arena[x] && g->producer[x] < 0 && !g->is_input[x]) {
            free(stateful); fb->why = "an output nothing writes"; goto fail;
        }
    }
    /* reads of memory nothing writes; the stored order must be topological */
    for (int v = 0; v < g->n; v++)
        for (int32_t i = g->in_ptr[v]; i < g->in_ptr[v + 1]; i++) {
            int32_t x = g->ins[i], p = g->producer[x];
            if (p < 0 && !g->is_input[x] && g->in_arena[x]) {
                free(stateful); fb->why = "read of memory nothing writes"; goto fail;
            }
            if (p > v) { free(stateful); fb->why = "stored order not topological"; goto fail; }
        }
    g->unplaced = 0;
    for (int64_t t = 0; t < nt; t++)
        if (g->in_arena[t] && !referenced[t]) {
            int64_t s = align_up(g->nbytes[t], R->align);
            if (s > g->unplaced) g->unplaced = s;
        }
    /* stateful ops chain: the stored relative order is a dependence (graph.build_subgraph);
     * kept in g->state reused as per-op flags through the caller */
    free(g->state);
    g->state = stateful;
    free(referenced);
    free(seen);
    free(src);
    free(repl);
    free(elems_of);
    return 1;
fail:
    free(referenced);
    free(seen);
    free(src);
    free(repl);
    free(elems_of);
    graph_free(g);
    memset(g, 0, sizeof *g);
    if (!fb->why) fb->why = "corrupt flatbuffer";
    return 0;
}

/* ------------------------------------------------------------------------------------- */
/* The problem (memory.build_problem with inplace=False) and the search                     */

typedef struct {
    int n, W;
    u64 *pred;      /* n*W */
    int32_t *succ_ptr, *succ;
    int64_t *out_total, *kept;
    int32_t *in_ptr;   /* n+1: arena inputs (size > 0, not pinned) */
    int64_t *in_size;
    u64 *in_cons;      /* per arena input entry: its readers (W words) */
    u64 *can_free;     /* W */
    u64 *anc, *desc;   /* n*W: ancestors, descendants (the op itself excluded) */
    int64_t resident0, live0, floor;
    /* per tensor, for closure bounds: arena bytes, readers (W words), how many, and the
     * graph's producer / pinned / subgraph-input tables (borrowed) */
    int nt;
    int64_t *tsize;
    u64 *tcons;
    int32_t *ncons;
    const int32_t *tprod;
    const uint8_t *tpinned, *tinput;
} Prob;

static void prob_free(Prob *p) {
    free(p->pred); free(p->succ_ptr); free(p->succ); free(p->out_total); free(p->kept);
    free(p->in_ptr); free(p->in_size); free(p->in_cons); free(p->can_free);
    free(p->anc); free(p->desc); free(p->tsize); free(p->tcons); free(p->ncons);
}

static inline void setb(u64 *s, int i) { s[i >> 6] |= (u64)1 << (i & 63); }
/* acc |= clo[u] | {u} for every u in set (clo: n*W closures, ancestors or descendants). */
static void or_closures(u64 *acc, const u64 *set, const u64 *clo, int W) {
    for (int w = 0; w < W; w++)
        for (u64 m = set[w]; m; m &= m - 1) {
            int u = w * 64 + __builtin_ctzll(m);
            const u64 *cu = clo + (size_t)u * W;
            for (int x = 0; x < W; x++) acc[x] |= cu[x];
            setb(acc, u);
        }
}
static inline int getb(const u64 *s, int i) { return (int)((s[i >> 6] >> (i & 63)) & 1); }

/* extra (NULL: none): bytes live only while op v runs, as memory.Problem.extra (the peaks
 * of the subgraphs a control-flow op nests), counted in its step as its outputs are. */
static int build_prob(const Graph *g, int64_t align, const int64_t *extra, Prob *p) {
    int n = g->n, W = g->W, nt = g->nt;
    memset(p, 0, sizeof *p);
    p->n = n;
    p->W = W;
    int64_t *size = calloc(nt + 1, sizeof *size);
    int32_t *ncons = calloc(nt + 1, sizeof *ncons);
    u64 *cons = calloc((size_t)(nt + 1) * W, sizeof(u64));
    u64 *anc = calloc((size_t)n * W, sizeof(u64)), *desc = calloc((size_t)n * W, sizeof(u64));
    p->pred = calloc((size_t)n * W, sizeof(u64));
    p->out_total = calloc(n, sizeof(int64_t));
    p->kept = calloc(n, sizeof(int64_t));
    p->in_ptr = calloc(n + 1, sizeof(int32_t));
    p->can_free = calloc(W, sizeof(u64));
    p->succ_ptr = calloc(n + 1, sizeof(int32_t));
    int64_t *lb = calloc(n, sizeof(int64_t));
    int ok = size && ncons && cons && anc && desc && p->pred && p->out_total && p->kept &&
             p->in_ptr && p->can_free && p->succ_ptr && lb;
    int64_t n_arena_in = 0, n_edges = 0;
    if (!ok) goto fail;
    for (int t = 0; t < nt; t++)
        if (g->in_arena[t] && (g->producer[t] >= 0 || g->is_input[t]))
            size[t] = align_up(g->nbytes[t], align);
    for (int v = 0; v < n; v++)
        for (int32_t i = g->in_ptr[v]; i < g->in_ptr[v + 1]; i++) {
            int32_t t = g->ins[i];
            ncons[t]++;
            setb(cons + (size_t)t * W, v);
            if (g->producer[t] >= 0) setb(p->pred + (size_t)v * W, g->producer[t]);
            if (size[t] && !g->pinned[t]) n_arena_in++;
        }
    int last = -1;
    for (int v = 0; v < n; v++)
        if (g->state[v]) {
            if (last >= 0) setb(p->pred + (size_t)v * W, last);
            last = v;
        }
    for (int v = 0; v < n; v++) {
        for (int32_t i = g->out_ptr[v]; i < g->out_ptr[v + 1]; i++) {
            int32_t t = g->outs[i];
            p->out_total[v] += size[t];
            if (ncons[t] || g->pinned[t]) p->kept[v] += size[t];
        }
        if (extra) p->out_total[v] += extra[v];
    }
    p->in_size = malloc((n_arena_in + 1) * sizeof(int64_t));
    p->in_cons = malloc((size_t)(n_arena_in + 1) * W * sizeof(u64));
    if (!p->in_size || !p->in_cons) goto fail;
    int64_t e = 0;
    for (int v = 0; v < n; v++) {
        int64_t dying = 0;
        for (int32_t i = g->in_ptr[v]; i < g->in_ptr[v + 1]; i++) {
            int32_t t = g->ins[i];
            if (!size[t] || g->pinned[t]) continue;
            p->in_size[e] = size[t];
            memcpy(p->in_cons + (size_t)e * W, cons + (size_t)t * W, W * sizeof(u64));
            dying += size[t];
            e++;
        }
        p->in_ptr[v + 1] = (int32_t)e;
        if (p->kept[v] <= dying) setb(p->can_free, v);
    }
    /* ancestors (stored order is topological: preds have lower indices) and successors */
    for (int v = 0; v < n; v++) {
        const u64 *pr = p->pred + (size_t)v * W;
        or_closures(anc + (size_t)v * W, pr, anc, W);
        for (int w = 0; w < W; w++)
            for (u64 m = pr[w]; m; m &= m - 1) {
                p->succ_ptr[w * 64 + __builtin_ctzll(m) + 1]++;
                n_edges++;
            }
    }
    for (int v = 0; v < n; v++) p->succ_ptr[v + 1] += p->succ_ptr[v];
    p->succ = malloc((n_edges + 1) * sizeof(int32_t));
    if (!p->succ) goto fail;
    {
        int32_t *fill = malloc((n + 1) * sizeof(int32_t));
        if (!fill) goto fail;
        memcpy(fill, p->succ_ptr, (n + 1) * sizeof(int32_t));
        for (int v = 0; v < n; v++) {
            const u64 *pr = p->pred + (size_t)v * W;
            for (int w = 0; w < W; w++) {
                u64 m = pr[w];
                while (m) {
                    int u = w * 64 + __builtin_ctzll(m);
                    m &= m - 1;
                    p->succ[fill[u]++] = v;
                }
            }
        }
        free(fill);
    }
    for (int v = n - 1; v >= 0; v--) {
        u64 *d = desc + (size_t)v * W;
        for (int32_t i = p->succ_ptr[v]; i < p->succ_ptr[v + 1]; i++) {
            int w2 = p->succ[i];
            const u64 *dw = desc + (size_t)w2 * W;
            for (int x = 0; x < W; x++) d[x] |= dw[x];
            setb(d, w2);
        }
    }
    /* resident before the first op, live at scope 0 */
    for (int i = 0; i < g->n_io_in; i++) {
        int32_t t = g->io_in[i];
        p->live0 += size[t];
        if (ncons[t] || g->pinned[t]) p->resident0 += size[t];
    }
    /* static bounds (bounds.static_bounds): v's outputs, and every tensor made before v (or
     * a subgraph input) that v or an op after v reads, or that is pinned */
    for (int v = 0; v < n; v++) lb[v] = p->out_total[v];
    {
        u64 *live = malloc(2 * W * sizeof(u64));
        if (!live) goto fail;
        u64 *reach = live + W;
        for (int t = 0; t < nt; t++) {
            if (!size[t]) continue;
            int32_t pr = g->producer[t];
            for (int x = 0; x < W; x++) {
                live[x] = pr >= 0 ? desc[(size_t)pr * W + x] : ~(u64)0;
                reach[x] = g->pinned[t] ? ~(u64)0 : 0;
            }
            if (!g->pinned[t]) or_closures(reach, cons + (size_t)t * W, anc, W);
            for (int w = 0; w < W; w++) {
                u64 m = live[w] & reach[w];
                if (w == W - 1 && (n & 63)) m &= ((u64)1 << (n & 63)) - 1;
                while (m) {
                    lb[w * 64 + __builtin_ctzll(m)] += size[t];
                    m &= m - 1;
                }
            }
        }
        free(live);
    }
    p->floor = p->live0;
    for (int v = 0; v < n; v++)
        if (lb[v] > p->floor) p->floor = lb[v];
    free(lb);
    p->anc = anc;
    p->desc = desc;
    p->nt = nt;
    p->tsize = size;
    p->tcons = cons;
    p->ncons = ncons;
    p->tprod = g->producer;
    p->tpinned = g->pinned;
    p->tinput = g->is_input;
    return 1;
fail:
    free(size); free(ncons); free(cons); free(anc); free(desc); free(lb);
    prob_free(p);
    memset(p, 0, sizeof *p);
    return 0;
}

/* Running v in state S (resident M): the step's peak M + up and the change of resident
 * bytes (scheduler._step without in-place pairs). S must not hold v. */
static inline void step(const Prob *p, const u64 *S, int v, int64_t *up, int64_t *delta) {
    int W = p->W;
    int64_t freed = 0;
    for (int32_t i = p->in_ptr[v]; i < p->in_ptr[v + 1]; i++) {
        const u64 *c = p->in_cons + (size_t)i * W;
        int dies = 1;
        for (int x = 0; x < W && dies; x++) {
            u64 left = c[x] & ~S[x];
            if (x == (v >> 6)) left &= ~((u64)1 << (v & 63));
            if (left) dies = 0;
        }
        if (dies) freed += p->in_size[i];
    }
    *up = p->out_total[v];
    *delta = p->kept[v] - freed;
}

static inline int ready_in(const Prob *p, const u64 *S, int v) {
    const u64 *pr = p->pred + (size_t)v * p->W;
    for (int x = 0; x < p->W; x++)
        if (pr[x] & ~S[x]) return 0;
    return 1;
}

/* Running the ops of goal & ~start in the stored order from start (resident M): the worst
 * step (cost[v]: v's), and M after. The stored order is topological, so this is an order of the segment. */
static int64_t stored_peak(const Prob *p, const u64 *start, const u64 *goal, int64_t *M,
                           u64 *S, int64_t *cost) {
    memcpy(S, start, p->W * sizeof(u64));
    int64_t worst = 0;
    for (int v = 0; v < p->n; v++) {
        if (!getb(goal, v) || getb(start, v)) continue;
        int64_t up, delta;
        step(p, S, v, &up, &delta);
        if (*M + up > worst) worst = *M + up;
        cost[v] = *M + up;
        *M += delta;
        setb(S, v);
    }
    return worst;
}

/* The stored order's peak over the whole problem when op v's extra bytes are
 * adj[v] more than the problem counts (scheduling.stored_peak's order, with the callees'
 * stored-order peaks where the problem has their minima). */
static int64_t stored_whole(const Prob *p, const int64_t *adj, u64 *S) {
    memset(S, 0, p->W * sizeof(u64));
    int64_t M = p->resident0, worst = p->live0;
    for (int v = 0; v < p->n; v++) {
        int64_t up, delta;
        step(p, S, v, &up, &delta);
        if (M + up + adj[v] > worst) worst = M + up + adj[v];
        M += delta;
        setb(S, v);
    }
    return worst;
}

/* The step-greedy order from start to goal: the ready op of the cheapest step, then of
 * least resident bytes left, then the lowest index. Its worst step; cost[v] = v's step. */
static int64_t greedy_peak(const Prob *p, const u64 *start, const u64 *goal, int64_t M,
                           u64 *S, int64_t *cost) {
    memcpy(S, start, p->W * sizeof(u64));
    int64_t worst = 0;
    for (;;) {
        int best = -1;
        int64_t bu = 0, bd = 0;
        for (int v = 0; v < p->n; v++) {
            if (!getb(goal, v) || getb(S, v) || !ready_in(p, S, v)) continue;
            int64_t up, delta;
            step(p, S, v, &up, &delta);
            if (best < 0 || up < bu || (up == bu && delta < bd)) { best = v; bu = up; bd = delta; }
        }
        if (best < 0) return worst;
        if (M + bu > worst) worst = M + bu;
        cost[best] = M + bu;
        M += bd;
        setb(S, best);
    }
}

/* The state table: open addressing over downsets; per state its ready ops, resident
 * bytes, best key and whether it was expanded. */
typedef struct {
    int W;
    int64_t cap, count;   /* slots (power of 2) and states */
    int32_t *slot;        /* -1 empty, else state index */
    uint32_t *tag;        /* per slot: high bits of the state's hash */
    u64 *bits;            /* 2W words per state: S, ready */
    int64_t *M, *key;
    uint8_t *closed;
    int64_t scap;         /* states allocated */
} States;

typedef struct { int64_t key; int32_t depth, state; } Item;
typedef struct { Item *a; int64_t n, cap; } Heap;

static inline int item_less(const Item *x, const Item *y) {
    if (x->key != y->key) return x->key < y->key;
    if (x->depth != y->depth) return x->depth > y->depth;
    return x->state < y->state;
}
static int heap_push(Heap *h, Item it) {
    if (h->n == h->cap) {
        int64_t c = h->cap ? 2 * h->cap : 1024;
        Item *a = realloc(h->a, c * sizeof *a);
        if (!a) return 0;
        h->a = a;
        h->cap = c;
    }
    int64_t i = h->n++;
    while (i > 0) {
        int64_t par = (i - 1) / 2;
        if (!item_less(&it, &h->a[par])) break;
        h->a[i] = h->a[par];
        i = par;
    }
    h->a[i] = it;
    return 1;
}
static Item heap_pop(Heap *h) {
    Item top = h->a[0], last = h->a[--h->n];
    int64_t i = 0;
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        const Item *best = &last;
        if (l < h->n && item_less(&h->a[l], best)) { m = l; best = &h->a[l]; }
        if (r < h->n && item_less(&h->a[r], best)) { m = r; }
        if (m == i) break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (h->n) h->a[i] = last;
    return top;
}

static int states_init(States *st, int W) {
    memset(st, 0, sizeof *st);
    st->W = W;
    st->cap = 1 << 12;
    st->slot = malloc(st->cap * sizeof(int32_t));
    st->tag = malloc(st->cap * sizeof(uint32_t));
    if (!st->slot || !st->tag) { free(st->slot); free(st->tag); return 0; }
    memset(st->slot, 0xff, st->cap * sizeof(int32_t));
    return 1;
}
static void states_free(States *st) {
    free(st->slot); free(st->tag); free(st->bits); free(st->M); free(st->key); free(st->closed);
}
/* The index of state S, or -1 (with *where the slot to fill). */
static int64_t states_find(const States *st, const u64 *S, int64_t *where) {
    int W = st->W;
    u64 h = hash_bits(S, W);
    uint32_t tag = (uint32_t)(h >> 32);
    int64_t i = (int64_t)(h & (u64)(st->cap - 1));
    for (;;) {
        int32_t s = st->slot[i];
        if (s < 0) { *where = i; return -1; }
        if (st->tag[i] == tag) {
            const u64 *b = st->bits + (size_t)s * 2 * W;
            int x = 0;
            while (x < W && b[x] == S[x]) x++;
            if (x == W) return s;
        }
        i = (i + 1) & (st->cap - 1);
    }
}
static int64_t states_add(States *st, const u64 *S, const u64 *ready, int64_t M, int64_t key) {
    int W = st->W;
    if (st->count == st->scap) {
        int64_t c = st->scap ? 2 * st->scap : 1024;
        u64 *b = realloc(st->bits, (size_t)c * 2 * W * sizeof(u64));
        if (b) st->bits = b;
        int64_t *m = realloc(st->M, c * sizeof(int64_t));
        if (m) st->M = m;
        int64_t *k = realloc(st->key, c * sizeof(int64_t));
        if (k) st->key = k;
        uint8_t *cl = realloc(st->closed, c);
        if (cl) st->closed = cl;
        if (!b || !m || !k || !cl) return -1;
        st->scap = c;
    }
    if (2 * (st->count + 1) > st->cap) { /* rehash */
        int64_t c = 2 * st->cap;
        int32_t *slot = malloc(c * sizeof(int32_t));
        uint32_t *tag = malloc(c * sizeof(uint32_t));
        if (!slot || !tag) { free(slot); free(tag); return -1; }
        memset(slot, 0xff, c * sizeof(int32_t));
        for (int64_t s = 0; s < st->count; s++) {
            u64 h = hash_bits(st->bits + (size_t)s * 2 * W, W);
            int64_t i = (int64_t)(h & (u64)(c - 1));
            while (slot[i] >= 0) i = (i + 1) & (c - 1);
            slot[i] = (int32_t)s;
            tag[i] = (uint32_t)(h >> 32);
        }
        free(st->slot);
        free(st->tag);
        st->slot = slot;
        st->tag = tag;
        st->cap = c;
    }
    int64_t where;
    states_find(st, S, &where);
    int64_t s = st->count++;
    st->slot[where] = (int32_t)s;
    st->tag[where] = (uint32_t)(hash_bits(S, W) >> 32);
    memcpy(st->bits + (size_t)s * 2 * W, S, W * sizeof(u64));
    memcpy(st->bits + (size_t)s * 2 * W + W, ready, W * sizeof(u64));
    st->M[s] = M;
    st->key[s] = key;
    st->closed[s] = 0;
    return s;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Add to ready the successors of v in goal that S now makes ready. */
static inline void newly_ready(const Prob *p, int v, const u64 *S, const u64 *goal,
                               u64 *ready) {
    for (int32_t i = p->succ_ptr[v]; i < p->succ_ptr[v + 1]; i++) {
        int w = p->succ[i];
        if (getb(goal, w) && !getb(S, w) && ready_in(p, S, w)) setb(ready, w);
    }
}

static const char STATE_LIMIT[] = "state limit";
#define QUICK_STATES 2000 /* per segment before raise_floor */

/* The least key max(worst step, floor) of the orders from downset start (resident mem) to
 * downset goal, when below ub (else ub: the incumbent is optimal). 1 done, 0 declined
 * (limit or memory: *why says which; STATE_LIMIT past cap states of this search or
 * max_states of all, *states counting them). */
static int min_peak(const Prob *p, const u64 *start, const u64 *goal, int64_t mem,
                    int64_t floor, int64_t ub, double deadline, int64_t max_states,
                    int64_t cap, int64_t *states, int64_t *best, const char **why) {
    int W = p->W;
    *best = ub;
    if (ub <= floor) return 1;
    int todo = 0;
    for (int x = 0; x < W; x++) todo += __builtin_popcountll(goal[x] & ~start[x]);
    States st;
    Heap h = {0};
    u64 *buf = malloc(4 * W * sizeof(u64));
    if (!buf || !states_init(&st, W)) { free(buf); *why = "out of memory"; return 0; }
    u64 *S = buf, *R = buf + W, *S2 = buf + 2 * W, *R2 = buf + 3 * W;
    memcpy(S, start, W * sizeof(u64));
    memset(R, 0, W * sizeof(u64));
    for (int v = 0; v < p->n; v++)
        if (getb(goal, v) && !getb(S, v) && ready_in(p, S, v)) setb(R, v);
    int result = 0;
    int64_t s0 = states_add(&st, S, R, mem, floor);
    if (s0 < 0 || !heap_push(&h, (Item){floor, 0, (int32_t)s0})) { *why = "out of memory"; goto done; }
    int64_t expanded = 0;
    result = 1;
    while (h.n) {
        Item it = heap_pop(&h);
        if (it.key >= ub) break;
        int64_t s = it.state;
        if (st.key[s] < it.key || st.closed[s]) continue;
        memcpy(S, st.bits + (size_t)s * 2 * W, W * sizeof(u64));
        memcpy(R, st.bits + (size_t)s * 2 * W + W, W * sizeof(u64));
        int64_t M = st.M[s], key = it.key;
        int depth = it.depth;
        /* free moves until none is left */
        int moved = 0;
        for (int again = 1; again;) {
            again = 0;
            for (int x = 0; x < W && !again; x++) {
                u64 m = R[x] & p->can_free[x];
                while (m) {
                    int v = x * 64 + __builtin_ctzll(m);
                    m &= m - 1;
                    int64_t up, delta;
                    step(p, S, v, &up, &delta);
                    if (delta <= 0 && M + up <= key) {
                        setb(S, v);
                        R[x] &= ~((u64)1 << (v & 63));
                        newly_ready(p, v, S, goal, R);
                        M += delta;
                        depth++;
                        moved = again = 1;
                        break;
                    }
                }
            }
        }
        if (moved) {
            int64_t where, s3 = states_find(&st, S, &where);
            if (s3 >= 0 && (st.closed[s3] || st.key[s3] < key)) continue;
            if (s3 < 0) {
                s3 = states_add(&st, S, R, M, key);
                if (s3 < 0) { *why = "out of memory"; result = 0; goto done; }
            }
            st.key[s3] = key;
            s = s3;
        }
        if (depth == todo) { *best = key; goto done; }
        st.closed[s] = 1;
        if ((++expanded & 63) == 0) {
            if (*states + st.count > max_states || st.count > cap) {
                *why = STATE_LIMIT;
                result = 0;
                goto done;
            }
            if (now_s() > deadline) { *why = "time limit"; result = 0; goto done; }
        }
        for (int x = 0; x < W; x++) {
            u64 m = R[x];
            while (m) {
                int v = x * 64 + __builtin_ctzll(m);
                m &= m - 1;
                int64_t up, delta;
                step(p, S, v, &up, &delta);
                int64_t k2 = M + up > key ? M + up : key;
                if (k2 >= ub) continue;
                memcpy(S2, S, W * sizeof(u64));
                setb(S2, v);
                int64_t where, s2 = states_find(&st, S2, &where);
                if (s2 >= 0 && (st.closed[s2] || st.key[s2] <= k2)) continue;
                memcpy(R2, R, W * sizeof(u64));
                R2[x] &= ~((u64)1 << (v & 63));
                newly_ready(p, v, S2, goal, R2);
                if (s2 < 0) {
                    s2 = states_add(&st, S2, R2, M + delta, k2);
                    if (s2 < 0) { *why = "out of memory"; result = 0; goto done; }
                } else {
                    st.key[s2] = k2;
                }
                if (!heap_push(&h, (Item){k2, depth + 1, (int32_t)s2})) {
                    *why = "out of memory"; result = 0; goto done;
                }
            }
        }
    }
done:
    *states += st.count;
    states_free(&st);
    free(h.a);
    free(buf);
    return result;
}

/* bounds.closure_bound without in-place savings: the least step of v over every downset in
 * which v can run (its ancestors in, v and its descendants out), as a maximum-weight
 * closure by one minimum cut on bounds._closure_graph's network: source -> "t has died"
 * (t's bytes) -> t's readers; op -> its predecessors (infinite); op -> sink (its kept
 * outputs). -1 when out of memory. */
static int64_t closure_bound(const Prob *p, int v) {
    int n = p->n, W = p->W;
    const u64 *in = p->anc + (size_t)v * W, *after = p->desc + (size_t)v * W;
    int32_t *node = malloc(n * sizeof(int32_t));
    int64_t m_cap = 2 * (int64_t)n + 2 * (int64_t)p->nt + 16, m = 0;
    for (int u = 0; u < n; u++) m_cap += p->succ_ptr[u + 1] - p->succ_ptr[u];
    for (int t = 0; t < p->nt; t++) m_cap += p->ncons[t];
    int32_t *tails = malloc(m_cap * sizeof(int32_t)), *heads = malloc(m_cap * sizeof(int32_t));
    int64_t *caps = malloc(m_cap * sizeof(int64_t));
    Flow *f = calloc(1, sizeof(Flow));
    int64_t result = -1;
    if (!node || !tails || !heads || !caps || !f) goto out;
    int nn = 2;
    int64_t resident = p->resident0, gain = 0, big = 1;
    for (int u = 0; u < n; u++) {
        node[u] = -1;
        if (u == v || getb(after, u)) continue;
        if (getb(in, u)) { resident += p->kept[u]; continue; }
        node[u] = nn++;
        big += p->kept[u];
    }
    for (int t = 0; t < p->nt; t++)
        if (p->tsize[t] && !p->tpinned[t] && p->ncons[t] && (p->tprod[t] >= 0 || p->tinput[t]))
            big += p->tsize[t];
    for (int u = 0; u < n; u++) {
        if (node[u] < 0) continue;
        if (p->kept[u]) { tails[m] = node[u]; heads[m] = 1; caps[m++] = p->kept[u]; }
        const u64 *pr = p->pred + (size_t)u * W;
        for (int x = 0; x < W; x++) {
            u64 b = pr[x];
            while (b) {
                int q = x * 64 + __builtin_ctzll(b);
                b &= b - 1;
                if (node[q] >= 0) { tails[m] = node[u]; heads[m] = node[q]; caps[m++] = big; }
            }
        }
    }
    for (int t = 0; t < p->nt; t++) {
        int64_t size = p->tsize[t];
        if (!size || p->tpinned[t] || !p->ncons[t]) continue;
        if (p->tprod[t] < 0 && !p->tinput[t]) continue;
        const u64 *c = p->tcons + (size_t)t * W;
        int late = getb(c, v), open = 0;
        for (int x = 0; x < W && !late; x++) late = (c[x] & after[x]) != 0;
        if (late) continue; /* read by v or later: cannot have died */
        for (int x = 0; x < W && !open; x++) open = (c[x] & ~in[x]) != 0;
        if (!open) { resident -= size; continue; } /* every reader forced in: dead */
        int y = nn++;
        gain += size;
        tails[m] = 0; heads[m] = y; caps[m++] = size;
        for (int x = 0; x < W; x++) {
            u64 b = c[x] & ~in[x];
            while (b) {
                int r = x * 64 + __builtin_ctzll(b);
                b &= b - 1;
                tails[m] = y; heads[m] = node[r]; caps[m++] = big;
            }
        }
    }
    if (flow_arcs(f, nn, m, tails, heads, caps) != FLOW_OK) goto out;
    memcpy(f->cap, f->cap0, (size_t)f->na * sizeof(int64_t));
    result = resident - (gain - flow_max(f)) + p->out_total[v];
out:
    free(node); free(tails); free(heads); free(caps);
    if (f) flow_free(f);
    return result;
}

/* Raise *floor by the closure bounds of the ops whose step in the best starting orders is
 * above it, most expensive first, within a quarter of the time left (scheduler.
 * _raise_floor): a higher floor makes more moves free. 0: out of memory. */
static int raise_floor(const Prob *p, const int64_t *cost, int32_t *by_cost, int64_t *floor,
                       double deadline) {
    int n = p->n, m = 0;
    for (int v = 0; v < n; v++)
        if (cost[v] > *floor) by_cost[m++] = v;
    for (int i = 1; i < m; i++) { /* most expensive first (insertion: stable) */
        int32_t v = by_cost[i];
        int j = i;
        while (j > 0 && cost[by_cost[j - 1]] < cost[v]) { by_cost[j] = by_cost[j - 1]; j--; }
        by_cost[j] = v;
    }
    double budget = now_s() + 0.25 * (deadline - now_s());
    for (int i = 0; i < m && cost[by_cost[i]] > *floor && now_s() < budget; i++) {
        int64_t b = closure_bound(p, by_cost[i]);
        if (b < 0) return 0;
        if (b > *floor) *floor = b;
    }
    return 1;
}

/* The minimum peak of the problem (1), or 0 declined. Cut ops (comparable to every other
 * op) force the state at them, so the segments between them are independent: each is
 * searched on its own, hardest first (largest incumbent), under the floor raised by those
 * solved before (scheduler.schedule's cut points). *stored gets the stored order's peak. */
static int solve(const Prob *p, double deadline, int64_t max_states, int64_t *stored,
                 int64_t *best, const char **why) {
    int n = p->n, W = p->W;
    int32_t *cut = malloc((n + 1) * sizeof(int32_t));
    int ncut = 0;
    if (!cut) { *why = "out of memory"; return 0; }
    for (int v = 0; v < n; v++) {
        int c = 1;
        for (int x = 0; x < W; x++)
            c += __builtin_popcountll(p->anc[(size_t)v * W + x]) +
                 __builtin_popcountll(p->desc[(size_t)v * W + x]);
        if (c == n) cut[ncut++] = v; /* in stored (topological) order: ancestors first */
    }
    int nseg = ncut + 1;
    u64 *bits = calloc((size_t)(2 * nseg + 1) * W, sizeof(u64));
    int64_t *mem = malloc(nseg * sizeof(int64_t)), *inc = malloc(nseg * sizeof(int64_t));
    int32_t *rank = malloc(nseg * sizeof(int32_t)), *by_cost = malloc(n * sizeof(int32_t));
    int64_t *cost = malloc(3 * (size_t)n * sizeof(int64_t));
    int ok = 0;
    if (!bits || !mem || !inc || !rank || !by_cost || !cost) { *why = "out of memory"; goto out; }
    int64_t *gcost = cost + n, *scost = cost + 2 * n;
    u64 *S = bits + (size_t)2 * nseg * W;
    int64_t M = p->resident0, floor = p->floor, worst = p->live0;
    for (int k = 0; k < nseg; k++) {
        u64 *start = bits + (size_t)2 * k * W, *goal = start + W;
        if (k > 0) { /* after cut k-1 */
            memcpy(start, p->anc + (size_t)cut[k - 1] * W, W * sizeof(u64));
            setb(start, cut[k - 1]);
        }
        if (k < ncut) memcpy(goal, p->anc + (size_t)cut[k] * W, W * sizeof(u64));
        else for (int v = 0; v < n; v++) setb(goal, v);
        mem[k] = M;
        int64_t g = greedy_peak(p, start, goal, M, S, gcost);
        int64_t w = stored_peak(p, start, goal, &M, S, scost);
        if (w > worst) worst = w;
        inc[k] = g < w ? g : w;
        for (int v = 0; v < n; v++)
            if (getb(goal, v) && !getb(start, v)) cost[v] = g < w ? gcost[v] : scost[v];
        rank[k] = k;
        if (k < ncut) { /* the cut op's step is forced */
            int64_t up, delta;
            step(p, goal, cut[k], &up, &delta);
            if (M + up > worst) worst = M + up;
            if (M + up > floor) floor = M + up;
            cost[cut[k]] = M + up;
            M += delta;
        }
    }
    *stored = worst;
    for (int i = 1; i < nseg; i++) { /* hardest first */
        int32_t r = rank[i];
        int j = i;
        while (j > 0 && inc[rank[j - 1]] < inc[r]) { rank[j] = rank[j - 1]; j--; }
        rank[j] = r;
    }
    /* Up to QUICK_STATES states settle most segments; the first that needs more is searched
     * again, and every later one, after raise_floor. */
    int64_t states = 0;
    int raised = 0;
    for (int i = 0; i < nseg; i++) {
        int k = rank[i];
        u64 *start = bits + (size_t)2 * k * W, *goal = start + W;
        int64_t key;
        if (inc[k] <= floor) continue;
        if (!min_peak(p, start, goal, mem[k], floor, inc[k], deadline, max_states,
                      raised ? max_states : QUICK_STATES, &states, &key, why)) {
            if (raised || *why != STATE_LIMIT) goto out;
            if (!raise_floor(p, cost, by_cost, &floor, deadline)) {
                *why = "out of memory";
                goto out;
            }
            raised = 1;
            i--;
            continue;
        }
        if (key > floor) floor = key;
    }
    *best = floor;
    ok = 1;
out:
    free(cut); free(bits); free(mem); free(inc); free(rank); free(by_cost); free(cost);
    return ok;
}

/* Per op of g: extra[v], the largest best peak (pk) of the subgraphs v nests, and adj[v],
 * how much more their largest stored-order peak (pk_stored) is; extra. */
static int64_t *extra_of(const Graph *g, const int64_t *pk, const int64_t *pk_stored,
                         int64_t *extra, int64_t *adj) {
    for (int v = 0; v < g->n; v++) {
        int64_t b = 0, st = 0;
        for (int32_t i = g->call_ptr[v]; i < g->call_ptr[v + 1]; i++) {
            int32_t c = g->calls[i];
            if (pk[c] > b) b = pk[c];
            if (pk_stored[c] > st) st = pk_stored[c];
        }
        extra[v] = b;
        adj[v] = st - b;
    }
    return extra;
}

/* The model's (stored, minimum) peaks (1), or 0 with *why. With control flow only a tree
 * of calls is answered: subgraph 0 calls the others, each called by exactly one op, once
 * (so each is marked once, and the composed nested peaks of memory._NestedPeaks are, per
 * control-flow op, the largest of its callees' peaks: no callee is placed later
 * elsewhere). Subgraphs are solved callees first (scheduling.schedule_model), each op's
 * extra bytes the largest peak of the subgraphs it nests under their best orders; the
 * stored peak takes their stored orders' peaks. Subgraph 0's minimum is then the model's
 * (scheduling.certificate's condition holds: every subgraph proven, each marked once). */
static int answer_model(Fb *fb, const Rules *R, const Edits *E, int shapes_true,
                        double deadline, int64_t max_states, int64_t *stored, int64_t *best,
                        const char **why) {
    ModelTabs mt;
    if (!read_model(fb, R, &mt)) { *why = fb->why; return 0; }
    int64_t ns = mt.n_sub, nread = 0, unplaced = 0;
    Edits none = {NULL, 0, NULL, 0, NULL, 0};
    int ok = 0;
    Graph *gs = calloc(ns, sizeof *gs);
    int64_t *pk = calloc(2 * ns, sizeof *pk), *pk_stored = pk + ns; /* per subgraph */
    int32_t *order = malloc(3 * ns * sizeof *order), *stk = order + ns, *at = order + 2 * ns;
    int32_t *ncalled = calloc(ns, sizeof *ncalled);
    if (!gs || !pk || !order || !ncalled) { *why = "out of memory"; goto out; }
    if (ns > 1 && (E->n || E->n_resized)) { *why = "edits with several subgraphs"; goto out; }
    for (int64_t s = 0; s < ns; s++, nread++)
        if (!read_graph(fb, R, s ? &none : E, &mt, s, &gs[s])) { *why = fb->why; goto out; }
    for (int64_t s = 0; s < ns; s++)
        if (gs[s].shape_rules && !shapes_true) { *why = NEEDS_SHAPES; goto out; }
    for (int64_t s = 0; s < ns; s++)
        for (int32_t i = 0; i < gs[s].call_ptr[gs[s].n]; i++) ncalled[gs[s].calls[i]]++;
    for (int64_t s = 1; s < ns; s++)
        if (ncalled[s] != 1) { *why = "control flow other than a tree of calls"; goto out; }
    int top = 0, no = 0; /* callees first: post-order from subgraph 0 */
    stk[0] = 0;
    at[0] = 0;
    while (top >= 0) {
        const Graph *g = &gs[stk[top]];
        if (at[top] < g->call_ptr[g->n]) {
            int32_t c = g->calls[at[top]++];
            if (top + 1 >= ns) { *why = "control flow other than a tree of calls"; goto out; }
            stk[++top] = c;
            at[top] = 0;
        } else {
            order[no++] = stk[top--];
        }
    }
    if (no != ns) { *why = "control flow other than a tree of calls"; goto out; }
    for (int k = 0; k < ns; k++) {
        int32_t s = order[k];
        const Graph *g = &gs[s];
        int64_t *extra = malloc(2 * ((size_t)g->n + 1) * sizeof *extra), *adj = extra + g->n + 1;
        u64 *S = malloc(((size_t)g->W + 1) * sizeof *S);
        Prob p;
        if (!extra || !S || !build_prob(g, R->align, extra_of(g, pk, pk_stored, extra, adj),
                                        &p)) {
            free(extra); free(S); *why = "out of memory"; goto out;
        }
        int64_t st, bs;
        int solved = solve(&p, deadline, max_states, &st, &bs, why);
        if (solved && ns > 1) st = stored_whole(&p, adj, S);
        prob_free(&p);
        free(extra);
        free(S);
        if (!solved) goto out;
        pk[s] = bs;
        pk_stored[s] = st;
        if (g->unplaced > unplaced) unplaced = g->unplaced;
    }
    /* memory.simulate counts unreferenced arena tensors, unplaced: the general path's
     * certificate then differs; it answers */
    if (unplaced > pk[0]) { *why = "unplaced arena tensor"; goto out; }
    *stored = pk_stored[0] > unplaced ? pk_stored[0] : unplaced;
    *best = pk[0];
    ok = 1;
out:
    for (int64_t s = 0; s < nread; s++) graph_free(&gs[s]);
    free(gs); free(pk); free(order); free(ncalled);
    model_free(&mt);
    return ok;
}

/* ------------------------------------------------------------------------------------- */

static int table_arg(PyObject *obj, Py_buffer *view, Py_ssize_t want, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return 0;
    if (want >= 0 && view->len != want) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", name, view->len, want);
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

PyObject *fast_peak(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer raw, tsize, tfixed, tstate, opf, ed, edt, rsz;
    PyObject *o_raw, *o_tsize, *o_tfixed, *o_tstate, *o_opf, *o_ed, *o_edt, *o_rsz;
    Rules R;
    double time_limit;
    long long max_states;
    int shapes_true;
    if (!PyArg_ParseTuple(args, "OOOOOLLLLLLLLdLpOOO", &o_raw, &o_tsize, &o_tfixed, &o_tstate,
                          &o_opf, &R.version, &R.align, &R.max_arena, &R.max_tensors,
                          &R.max_ops, &R.max_buffers, &R.max_entries, &R.n_op_flags,
                          &time_limit, &max_states, &shapes_true, &o_ed, &o_edt, &o_rsz))
        return NULL;
    double deadline = now_s() + time_limit;
    int got = 0;
    PyObject *result = NULL; /* NULL with an exception set until the answer is built */
    if (!table_arg(o_raw, &raw, -1, "raw")) return NULL;
    got++;
    if (!table_arg(o_tsize, &tsize, 256 * 4, "type_size")) goto release;
    got++;
    if (!table_arg(o_tfixed, &tfixed, 256 * 4, "fixed_size")) goto release;
    got++;
    if (!table_arg(o_tstate, &tstate, 256, "type_state")) goto release;
    got++;
    if (!table_arg(o_opf, &opf, 3 * R.n_op_flags, "op_flags")) goto release;
    got++;
    if (!table_arg(o_ed, &ed, -1, "edits")) goto release;
    got++;
    if (!table_arg(o_edt, &edt, -1, "edit_tensors")) goto release;
    got++;
    if (!table_arg(o_rsz, &rsz, -1, "resized")) goto release;
    got++;
    if (ed.len % 8 || edt.len % 16 || rsz.len % 16) {
        PyErr_SetString(PyExc_ValueError, "edits: int64 records; edit_tensors, resized: pairs");
        goto release;
    }
    Edits E = {NULL, 0, edt.buf, edt.len / 16, rsz.buf, rsz.len / 16};
    if (!parse_edits(ed.buf, ed.len / 8, &E)) {
        free(E.e);
        PyErr_SetString(PyExc_ValueError, "edits: malformed records");
        goto release;
    }
    R.type_size = tsize.buf;
    R.fixed_size = tfixed.buf;
    R.type_state = tstate.buf;
    R.op_flags = opf.buf;
    R.call_info = (const uint8_t *)opf.buf + R.n_op_flags;
    Fb fb = {raw.buf, raw.len, NULL};
    const char *why = NULL;
    int64_t stored = 0, best = 0;
    int found;
    Py_BEGIN_ALLOW_THREADS
    found = answer_model(&fb, &R, &E, shapes_true, deadline, max_states, &stored, &best, &why);
    Py_END_ALLOW_THREADS
    free(E.e);
    if (found)
        result = Py_BuildValue("LL", (long long)stored, (long long)best);
    else
        result = PyUnicode_FromString(why ? why : "declined");
release:
    if (got > 0) PyBuffer_Release(&raw);
    if (got > 1) PyBuffer_Release(&tsize);
    if (got > 2) PyBuffer_Release(&tfixed);
    if (got > 3) PyBuffer_Release(&tstate);
    if (got > 4) PyBuffer_Release(&opf);
    if (got > 5) PyBuffer_Release(&ed);
    if (got > 6) PyBuffer_Release(&edt);
    if (got > 7) PyBuffer_Release(&rsz);
    return result;
}


/* ------------------------------------------------------------------------------------- */
/* fastread.read_lite's field reads in C: the same fields, the same checks, as tuples      */

/* Each returns a new reference, Py_None (a new reference) when a read fails the reader's
 * checks (fastread then reads the bytes itself and raises its error), NULL on a Python
 * error (out of memory). */
#define TRY(x) do { if (!(x)) { bad = 1; goto out; } } while (0)

static PyObject *py_ints(Fb *fb, int64_t vec, int *bad) { /* None when absent */
    int64_t n, first;
    if (!fb_vector(fb, vec, 4, &n, &first)) { *bad = 1; return NULL; }
    if (vec < 0) Py_RETURN_NONE;
    PyObject *t = PyTuple_New(n);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) {
        PyObject *x = PyLong_FromLong(i32elem(fb, first, i));
        if (!x) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, i, x);
    }
    return t;
}
static PyObject *py_ints_field(Fb *fb, const Tab *t, int slot, int empty, int *bad) {
    int64_t vec;
    if (!fb_target(fb, t, slot, &vec)) { *bad = 1; return NULL; }
    if (vec < 0 && empty) return PyTuple_New(0);
    return py_ints(fb, vec, bad);
}
static PyObject *py_string(Fb *fb, const Tab *t, int slot, int *bad) {
    int64_t vec, n, first;
    if (!fb_target(fb, t, slot, &vec) || !fb_vector(fb, vec, 1, &n, &first)) {
        *bad = 1;
        return NULL;
    }
    if (vec < 0) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)fb->b + first, n);
}
static int scalar_of(Fb *fb, const Tab *t, int slot, int width, uint64_t dflt, int sign,
                     long long *out) {
    uint64_t v;
    if (!fb_scalar(fb, t, slot, width, dflt, &v)) return 0;
    if (sign && width == 1) *out = (int8_t)(uint8_t)v;
    else if (sign && width == 4) *out = (int32_t)(uint32_t)v;
    else *out = (long long)v;
    return 1;
}

static PyObject *lite_tensor(Fb *fb, int64_t first, int64_t i, int *bad) {
    Tab t;
    long long type, buffer, var, external;
    int64_t sp;
    if (!fb_elem_table(fb, first, i, &t)) { *bad = 1; return NULL; }
    PyObject *shape = py_ints_field(fb, &t, 0, 0, bad);
    if (!shape) return NULL;
    if (!scalar_of(fb, &t, 1, 1, 0, 1, &type) || !scalar_of(fb, &t, 2, 4, 0, 0, &buffer)) {
        Py_DECREF(shape); *bad = 1; return NULL;
    }
    PyObject *name = py_string(fb, &t, 3, bad);
    if (!name) { Py_DECREF(shape); return NULL; }
    if (!scalar_of(fb, &t, 5, 1, 0, 0, &var) || !scalar_of(fb, &t, 10, 4, 0, 0, &external)) {
        Py_DECREF(shape); Py_DECREF(name); *bad = 1; return NULL;
    }
    sp = slot_off(fb, &t, 6);
    return Py_BuildValue("(NLLNOOL)", shape, type, buffer, name, var ? Py_True : Py_False,
                         sp ? Py_True : Py_None, external);
}

static PyObject *lite_operator(Fb *fb, int64_t first, int64_t i, int *bad) {
    Tab t;
    long long opcode, otype;
    int64_t opt;
    if (!fb_elem_table(fb, first, i, &t)) { *bad = 1; return NULL; }
    PyObject *ins = NULL, *outs = NULL, *inter = NULL;
    if (!scalar_of(fb, &t, 0, 4, 0, 0, &opcode)) { *bad = 1; return NULL; }
    if (!(ins = py_ints_field(fb, &t, 1, 1, bad))) goto fail;
    if (!(outs = py_ints_field(fb, &t, 2, 1, bad))) goto fail;
    if (!(inter = py_ints_field(fb, &t, 8, 0, bad))) goto fail;
    if (!scalar_of(fb, &t, 3, 1, 0, 0, &otype) || !fb_target(fb, &t, 4, &opt)) {
        *bad = 1;
        goto fail;
    }
    if (opt < 0) return Py_BuildValue("(LNNNLO)", opcode, ins, outs, inter, otype, Py_None);
    return Py_BuildValue("(LNNNLL)", opcode, ins, outs, inter, otype, (long long)opt);
fail:
    Py_XDECREF(ins); Py_XDECREF(outs); Py_XDECREF(inter);
    return NULL;
}

typedef PyObject *(*ElemFn)(Fb *, int64_t, int64_t, int *);

/* [fn(element i) for the tables of a vector] ([] when absent). */
static PyObject *lite_list(Fb *fb, const Tab *t, int slot, ElemFn fn, int *bad) {
    int64_t vec, n, first;
    if (!fb_target(fb, t, slot, &vec) || !fb_vector(fb, vec, 4, &n, &first)) {
        *bad = 1;
        return NULL;
    }
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (int64_t i = 0; i < n; i++) {
        PyObject *x = fn(fb, first, i, bad);
        if (!x) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, i, x);
    }
    return list;
}

static PyObject *lite_subgraph(Fb *fb, int64_t first, int64_t i, int *bad) {
    Tab t;
    if (!fb_elem_table(fb, first, i, &t)) { *bad = 1; return NULL; }
    PyObject *ts = NULL, *ops = NULL, *ins = NULL, *outs = NULL, *name = NULL;
    if (!(ts = lite_list(fb, &t, 0, lite_tensor, bad))) goto fail;
    if (!(ops = lite_list(fb, &t, 3, lite_operator, bad))) goto fail;
    if (!(ins = py_ints_field(fb, &t, 1, 1, bad))) goto fail;
    if (!(outs = py_ints_field(fb, &t, 2, 1, bad))) goto fail;
    if (!(name = py_string(fb, &t, 4, bad))) goto fail;
    return Py_BuildValue("(NNNNN)", ts, ops, ins, outs, name);
fail:
    Py_XDECREF(ts); Py_XDECREF(ops); Py_XDECREF(ins); Py_XDECREF(outs);
    return NULL;
}

static PyObject *lite_code(Fb *fb, int64_t first, int64_t i, int *bad) {
    Tab t;
    long long builtin, dep, version;
    if (!fb_elem_table(fb, first, i, &t) || !scalar_of(fb, &t, 3, 4, 0, 1, &builtin) ||
        !scalar_of(fb, &t, 0, 1, 0, 1, &dep)) { *bad = 1; return NULL; }
    PyObject *custom = py_string(fb, &t, 1, bad);
    if (!custom) return NULL;
    if (!scalar_of(fb, &t, 2, 4, 1, 1, &version)) { Py_DECREF(custom); *bad = 1; return NULL; }
    return Py_BuildValue("(LLNL)", builtin, dep, custom, version);
}

static PyObject *lite_buffer(Fb *fb, int64_t first, int64_t i, int *bad) {
    Tab t;
    int64_t vec, n, data;
    long long offset, size;
    if (!fb_elem_table(fb, first, i, &t) || !fb_target(fb, &t, 0, &vec) ||
        !fb_vector(fb, vec, 1, &n, &data) || !scalar_of(fb, &t, 1, 8, 0, 0, &offset) ||
        !scalar_of(fb, &t, 2, 8, 0, 0, &size)) { *bad = 1; return NULL; }
    return Py_BuildValue("(LLKK)", (long long)(vec < 0 ? 0 : data), (long long)(vec < 0 ? 0 : n),
                         (unsigned long long)offset, (unsigned long long)size);
}

static PyObject *lite_metadata(Fb *fb, int64_t first, int64_t i, int *bad) {
    Tab t;
    long long buffer;
    if (!fb_elem_table(fb, first, i, &t)) { *bad = 1; return NULL; }
    PyObject *name = py_string(fb, &t, 0, bad);
    if (!name) return NULL;
    if (!scalar_of(fb, &t, 1, 4, 0, 0, &buffer)) { Py_DECREF(name); *bad = 1; return NULL; }
    return Py_BuildValue("(NL)", name, buffer);
}

PyObject *lite_tables(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer raw;
    if (!PyArg_ParseTuple(args, "y*", &raw)) return NULL;
    Fb fb = {raw.buf, raw.len, NULL};
    int bad = 0;
    PyObject *codes = NULL, *subs = NULL, *bufs = NULL, *md = NULL, *result = NULL;
    Tab root;
    long long version;
    TRY(fb.n >= 4 && fb_table(&fb, u32at(&fb, 0), &root) &&
        scalar_of(&fb, &root, 0, 4, 0, 0, &version));
    if (!(codes = lite_list(&fb, &root, 1, lite_code, &bad))) goto out;
    if (!(subs = lite_list(&fb, &root, 2, lite_subgraph, &bad))) goto out;
    if (!(bufs = lite_list(&fb, &root, 4, lite_buffer, &bad))) goto out;
    if (!(md = lite_list(&fb, &root, 6, lite_metadata, &bad))) goto out;
    result = Py_BuildValue("(LNNNN)", version, codes, subs, bufs, md);
    codes = subs = bufs = md = NULL;
out:
    Py_XDECREF(codes); Py_XDECREF(subs); Py_XDECREF(bufs); Py_XDECREF(md);
    PyBuffer_Release(&raw);
    if (!result && bad && !PyErr_Occurred()) Py_RETURN_NONE;
    return result;
}

/* ------------------------------------------------------------------------------------- */
/* flatbuffer_io.parse_model's tensors and operators: every field the generated object     */
/* API unpacks, as flat tuples (vectors as start, length: the reader makes numpy views)    */

/* A vector field as (start, length) into *start, *n; start -1 when absent. */
static int span_of(Fb *fb, const Tab *t, int slot, int elsize, long long *start, long long *n) {
    int64_t vec, len, first;
    if (!fb_target(fb, t, slot, &vec) || !fb_vector(fb, vec, elsize, &len, &first)) return 0;
    *start = vec < 0 ? -1 : first;
    *n = vec < 0 ? 0 : len;
    return 1;
}

/* Tensor: (shape start, n, type, buffer, name or None, quantization table or -1, variable,
 * shape signature start, n, has rank, external buffer); with sparsity or variant tensors
 * the table's position alone (the generated code unpacks it). */
static PyObject *full_tensor(Fb *fb, int64_t first, int64_t i, int *bad) {
    Tab t;
    long long sh, shn, type, buffer, var, sig, sign, rank, external;
    int64_t q;
    if (!fb_elem_table(fb, first, i, &t)) { *bad = 1; return NULL; }
    if (slot_off(fb, &t, 6) || slot_off(fb, &t, 9)) return PyLong_FromLongLong(t.pos);
    if (!span_of(fb, &t, 0, 4, &sh, &shn) || !scalar_of(fb, &t, 1, 1, 0, 1, &type) ||
        !scalar_of(fb, &t, 2, 4, 0, 0, &buffer) || !fb_target(fb, &t, 4, &q) ||
        !scalar_of(fb, &t, 5, 1, 0, 0, &var) || !span_of(fb, &t, 7, 4, &sig, &sign) ||
        !scalar_of(fb, &t, 8, 1, 0, 0, &rank) || !scalar_of(fb, &t, 10, 4, 0, 0, &external)) {
        *bad = 1;
        return NULL;
    }
    PyObject *name = py_string(fb, &t, 3, bad);
    if (!name) return NULL;
    return Py_BuildValue("(LLLLNLOLLOL)", sh, shn, type, buffer, name, (long long)q,
                         var ? Py_True : Py_False, sig, sign, rank ? Py_True : Py_False,
                         external);
}

/* Operator: (opcode, inputs start, n, outputs start, n, options type, options table or -1,
 * custom options start, n, custom format, mutating start, n, intermediates start, n,
 * large custom offset, size, debug metadata index); with a builtin_options_2 field the
 * table's position alone. */
static PyObject *full_operator(Fb *fb, int64_t first, int64_t i, int *bad) {
    Tab t;
    long long opcode, in, inn, out, outn, otype, cu, cun, fmt, mu, mun, it, itn, loff, lsize, dbg;
    int64_t opt;
    if (!fb_elem_table(fb, first, i, &t)) { *bad = 1; return NULL; }
    if (slot_off(fb, &t, 11) || slot_off(fb, &t, 12)) return PyLong_FromLongLong(t.pos);
    if (!scalar_of(fb, &t, 0, 4, 0, 0, &opcode) || !span_of(fb, &t, 1, 4, &in, &inn) ||
        !span_of(fb, &t, 2, 4, &out, &outn) || !scalar_of(fb, &t, 3, 1, 0, 0, &otype) ||
        !fb_target(fb, &t, 4, &opt) || !span_of(fb, &t, 5, 1, &cu, &cun) ||
        !scalar_of(fb, &t, 6, 1, 0, 1, &fmt) || !span_of(fb, &t, 7, 1, &mu, &mun) ||
        !span_of(fb, &t, 8, 4, &it, &itn) || !scalar_of(fb, &t, 9, 8, 0, 0, &loff) ||
        !scalar_of(fb, &t, 10, 8, 0, 0, &lsize) ||
        !scalar_of(fb, &t, 13, 4, (uint64_t)(uint32_t)-1, 1, &dbg)) {
        *bad = 1;
        return NULL;
    }
    return Py_BuildValue("(LLLLLLLLLLLLLLKKL)", opcode, in, inn, out, outn, otype,
                         (long long)opt, cu, cun, fmt, mu, mun, it, itn,
                         (unsigned long long)loff, (unsigned long long)lsize, dbg);
}

static PyObject *full_subgraph(Fb *fb, int64_t first, int64_t i, int *bad) {
    Tab t;
    if (!fb_elem_table(fb, first, i, &t)) { *bad = 1; return NULL; }
    PyObject *ts = lite_list(fb, &t, 0, full_tensor, bad);
    if (!ts) return NULL;
    PyObject *ops = lite_list(fb, &t, 3, full_operator, bad);
    if (!ops) { Py_DECREF(ts); return NULL; }
    return Py_BuildValue("(NN)", ts, ops);
}

PyObject *full_tables(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer raw;
    if (!PyArg_ParseTuple(args, "y*", &raw)) return NULL;
    Fb fb = {raw.buf, raw.len, NULL};
    int bad = 0;
    PyObject *result = NULL;
    Tab root;
    TRY(fb.n >= 4 && fb_table(&fb, u32at(&fb, 0), &root));
    result = lite_list(&fb, &root, 2, full_subgraph, &bad);
out:
    PyBuffer_Release(&raw);
    if (!result && bad && !PyErr_Occurred()) Py_RETURN_NONE;
    return result;
}

const char FAST_PEAK_DOC[] =
    "fast_peak(raw, type_size, fixed_size, type_state, op_flags, version, align, max_arena,\n"
    "          max_tensors, max_ops, max_buffers, max_entries, n_op_flags, time_limit,\n"
    "          max_states, shapes_true, edits, edit_tensors, resized) -> (stored,\n"
    "optimal) or the reason (str) it declines; shapes_true: the Python pass ran (its\n"
    "results are the last three arguments); edits: int64 records [before, builtin code, n, inputs.., n, outputs.., n or -1,\n"
    "new inputs of op before..], operators added just before stored ones (befores\n"
    "increasing), their added tensors numbered from the stored count on, one (type code,\n"
    "elements) int64 pair each in edit_tensors; resized: (tensor, elements) int64 pairs,\n"
    "the inferred sizes of stored tensors whose inferred shapes differ";
