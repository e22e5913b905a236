/*
 * flatbuffer_io's writer: the generated object API's TensorT.Pack and OperatorT.Pack in C.
 *
 * The generated Pack writes every field through several Python calls of the builder; a
 * 50,000-operator model spends most of its write there. pack_tensor / pack_operator do
 * the same writes on the same builder (flatbuffer_io._LeanBuilder: its bytearray, head,
 * minalign and vtable dictionary), in the same order, so the bytes are the same: vectors
 * as CreateNumpyVector (numpy arrays) or the Prepend loop (lists) writes them, names as
 * CreateString, the table and its deduplicated vtable as _LeanBuilder.WriteVtable. Nested
 * tables (quantisation, builtin options) are packed by their own generated Pack, called
 * from here with the builder's state handed over. Anything else (sparsity, variant
 * tensors, builtin_options_2, a value outside its type, a vector of another element type,
 * forceDefaults) goes to the generated Pack (passed in as `fallback`) before a byte is
 * written, so its errors stay the generated code's.
 */
#include <string.h>

#include "_searchcore.h"

#define MAX_BUFFER ((int64_t)1 << 31) /* flatbuffers.Builder.MAX_BUFFER_SIZE */

typedef struct {
    PyObject *builder;
    PyObject *bytes; /* the builder's bytearray (new reference) */
    int64_t len, head;
    long minalign;
} B;

static int get_int64(PyObject *obj, const char *name, int64_t *out) {
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (!v) return 0;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return 0;
    *out = x;
    return 1;
}

/* The builder's state into s (after Python wrote to it). */
static int b_load(B *s) {
    int64_t head, minalign;
    PyObject *bytes = PyObject_GetAttrString(s->builder, "Bytes");
    if (!bytes) return 0;
    if (!PyByteArray_CheckExact(bytes)) {
        Py_DECREF(bytes);
        PyErr_SetString(PyExc_TypeError, "builder.Bytes is not a bytearray");
        return 0;
    }
    if (!get_int64(s->builder, "head", &head) || !get_int64(s->builder, "minalign", &minalign)) {
        Py_DECREF(bytes);
        return 0;
    }
    Py_XDECREF(s->bytes);
    s->bytes = bytes;
    s->len = PyByteArray_GET_SIZE(bytes);
    s->head = head;
    s->minalign = (long)minalign;
    if (head < 0 || head > s->len) {
        PyErr_SetString(PyExc_ValueError, "builder.head outside its buffer");
        return 0;
    }
    return 1;
}

/* s's state into the builder (before Python writes to it, and at the end). */
static int b_store(B *s) {
    PyObject *h = PyLong_FromLongLong(s->head), *m = PyLong_FromLong(s->minalign);
    int ok = h && m && PyObject_SetAttrString(s->builder, "head", h) == 0 &&
             PyObject_SetAttrString(s->builder, "minalign", m) == 0;
    Py_XDECREF(h);
    Py_XDECREF(m);
    return ok;
}

static inline uint8_t *at(B *s) { return (uint8_t *)PyByteArray_AS_STRING(s->bytes); }
static inline int64_t offset(const B *s) { return s->len - s->head; }

/* GrowByteBuffer until head >= needed: the data moves to the end of a buffer twice the size. */
static int grow(B *s, int64_t needed) {
    while (s->head < needed) {
        if (s->len >= MAX_BUFFER) {
            PyErr_SetString(PyExc_ValueError, "flatbuffers: cannot grow buffer beyond 2 gigabytes");
            return 0;
        }
        int64_t n = s->len * 2 < MAX_BUFFER ? s->len * 2 : MAX_BUFFER;
        if (n == 0) n = 1;
        PyObject *nb = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)n);
        if (!nb) return 0;
        uint8_t *p = (uint8_t *)PyByteArray_AS_STRING(nb);
        memset(p, 0, (size_t)(n - s->len));
        memcpy(p + (n - s->len), at(s), (size_t)s->len);
        if (PyObject_SetAttrString(s->builder, "Bytes", nb) != 0) { Py_DECREF(nb); return 0; }
        Py_DECREF(s->bytes);
        s->bytes = nb;
        s->head += n - s->len;
        s->len = n;
    }
    return 1;
}

/* _LeanBuilder.Prep: pad (zeros) so that `size` bytes after `additional` more are aligned. */
static int prep(B *s, int size, int64_t additional) {
    if (size > s->minalign) s->minalign = size;
    int64_t pad = (-(offset(s) + additional)) & (size - 1);
    if (!grow(s, pad + size + additional)) return 0;
    if (pad) {
        memset(at(s) + s->head - pad, 0, (size_t)pad);
        s->head -= pad;
    }
    return 1;
}

static inline void put(B *s, uint64_t v, int width) { /* little-endian, at head - width */
    s->head -= width;
    uint8_t *p = at(s) + s->head;
    for (int i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int prepend_uoffset(B *s, int64_t target) { /* PrependUOffsetTRelative */
    if (!prep(s, 4, 0)) return 0;
    int64_t here = offset(s);
    if (!(target <= here)) {
        PyErr_SetString(PyExc_ValueError, "flatbuffers: Offset arithmetic error.");
        return 0;
    }
    put(s, (uint32_t)(here - target + 4), 4);
    return 1;
}

/* A vector's bytes: numpy array of one element type, or a list/tuple of ints (int32). */
typedef struct {
    int present;
    Py_buffer view; /* numpy: its buffer (view.obj set) */
    int32_t *ints;  /* list: the values */
    int64_t n;
    int itemsize;
} Vec;

static void vec_free(Vec *v) {
    if (v->view.obj) PyBuffer_Release(&v->view);
    v->view.obj = NULL;
    PyMem_Free(v->ints);
    v->ints = NULL;
}

/* 1: ready (or absent: None), 0: not one this writer handles (the generated Pack writes
 * it), -1: Python error. `format`: the buffer format of the numpy element type. */
static int vec_of(PyObject *x, PyTypeObject *ndarray, const char *format, int itemsize,
                  int allow_list, Vec *v) {
    memset(v, 0, sizeof *v);
    if (x == Py_None) return 1;
    v->present = 1;
    v->itemsize = itemsize;
    if (Py_TYPE(x) == ndarray) {
        if (PyObject_GetBuffer(x, &v->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
            PyErr_Clear();
            v->view.obj = NULL;
            return 0;
        }
        const char *f = v->view.format ? v->view.format : "B";
        if (f[0] == '<' || f[0] == '=') f++;
        if (v->view.ndim != 1 || v->view.itemsize != itemsize || strcmp(f, format) != 0) {
            vec_free(v);
            return 0;
        }
        v->n = v->view.shape[0];
        return 1;
    }
    if (!allow_list || !(PyList_CheckExact(x) || PyTuple_CheckExact(x))) return 0;
    PyObject *seq = x;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    v->ints = PyMem_Malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!v->ints) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyLong_CheckExact(e)) { vec_free(v); return 0; }
        int overflow;
        long long y = PyLong_AsLongLongAndOverflow(e, &overflow);
        if (overflow || y < INT32_MIN || y > INT32_MAX) { vec_free(v); return 0; }
        v->ints[i] = (int32_t)y;
    }
    v->n = n;
    return 1;
}

/* CreateNumpyVector (StartVector(itemsize, n, itemsize), payload, EndVector), or the list
 * path (StartVector(4, n, 4), PrependInt32 each, EndVector): the same bytes. */
static int write_vec(B *s, Vec *v, int64_t *out) {
    int64_t nbytes = v->n * v->itemsize;
    if (v->n > 0xFFFFFFFFLL) { PyErr_SetString(PyExc_TypeError, "vector too long"); return 0; }
    if (!prep(s, 4, nbytes) || !prep(s, v->itemsize, nbytes)) return 0;
    s->head -= nbytes;
    if (v->ints) {
        uint8_t *p = at(s) + s->head;
        for (int64_t i = 0; i < v->n; i++) {
            uint32_t x = (uint32_t)v->ints[i];
            p[4 * i] = (uint8_t)x;
            p[4 * i + 1] = (uint8_t)(x >> 8);
            p[4 * i + 2] = (uint8_t)(x >> 16);
            p[4 * i + 3] = (uint8_t)(x >> 24);
        }
    } else if (nbytes) {
        memcpy(at(s) + s->head, v->view.buf, (size_t)nbytes);
    }
    put(s, (uint32_t)v->n, 4);
    *out = offset(s);
    return 1;
}

/* CreateString of bytes (or str, UTF-8): Prep(4, n + 1), a zero byte, the bytes, EndVector. */
static int write_string(B *s, const char *str, Py_ssize_t n, int64_t *out) {
    if (!prep(s, 4, (int64_t)n + 1)) return 0;
    s->head -= 1;
    at(s)[s->head] = 0;
    s->head -= n;
    memcpy(at(s) + s->head, str, (size_t)n);
    put(s, (uint32_t)n, 4);
    *out = offset(s);
    return 1;
}

/* A nested table packed by its own generated Pack, the builder's state handed over. */
static int write_nested(B *s, PyObject *obj, int64_t *out) {
    if (!b_store(s)) return 0;
    PyObject *r = PyObject_CallMethod(obj, "Pack", "O", s->builder);
    if (!r) return 0;
    long long o = PyLong_AsLongLong(r);
    Py_DECREF(r);
    if (o == -1 && PyErr_Occurred()) return 0;
    *out = o;
    return b_load(s);
}

/* ---- tables ---- */

enum { MAX_FIELDS = 16 };
typedef struct {
    int64_t vt[MAX_FIELDS];
    int n;
    int64_t object_end;
} Obj;

static void start_object(B *s, Obj *o, int n) {
    memset(o->vt, 0, sizeof o->vt);
    o->n = n;
    o->object_end = offset(s);
}

static int slot_uoffset(B *s, Obj *o, int slot, int64_t x) { /* default 0: absent */
    if (!x) return 1;
    if (!prepend_uoffset(s, x)) return 0;
    o->vt[slot] = offset(s);
    return 1;
}

static int slot_scalar(B *s, Obj *o, int slot, int width, uint64_t x, uint64_t dflt) {
    if (x == dflt) return 1;
    if (!prep(s, width, 0)) return 0;
    put(s, x, width);
    o->vt[slot] = offset(s);
    return 1;
}

static int prepend_u16(B *s, int64_t x) {
    if (x < 0 || x > 0xFFFF) {
        PyErr_Format(PyExc_TypeError, "bad number %lld for type uint16", (long long)x);
        return 0;
    }
    if (!prep(s, 2, 0)) return 0;
    put(s, (uint64_t)x, 2);
    return 1;
}

static inline void put_i32_at(B *s, int64_t pos, int64_t v) {
    uint32_t x = (uint32_t)(int32_t)v;
    uint8_t *p = at(s) + pos;
    p[0] = (uint8_t)x; p[1] = (uint8_t)(x >> 8); p[2] = (uint8_t)(x >> 16); p[3] = (uint8_t)(x >> 24);
}

/* EndObject: _LeanBuilder.WriteVtable (same key, same deduplication, same bytes). */
static int end_object(B *s, Obj *o, PyObject *vtables, int64_t *out) {
    if (!prepend_uoffset(s, 0)) return 0;
    int64_t object_offset = offset(s);
    int64_t key[MAX_FIELDS + 1];
    int nk = 0, trim = 1;
    for (int i = o->n - 1; i >= 0; i--) {
        int64_t e = o->vt[i];
        if (e == 0) {
            if (trim) continue;
        } else {
            e = object_offset - e;
            trim = 0;
        }
        key[nk++] = e;
    }
    int64_t object_size = object_offset - o->object_end;
    key[nk++] = object_size;
    PyObject *tkey = PyTuple_New(nk);
    if (!tkey) return 0;
    for (int i = 0; i < nk; i++) {
        PyObject *x = PyLong_FromLongLong(key[i]);
        if (!x) { Py_DECREF(tkey); return 0; }
        PyTuple_SET_ITEM(tkey, i, x);
    }
    PyObject *found = PyDict_GetItemWithError(vtables, tkey); /* borrowed */
    if (!found && PyErr_Occurred()) { Py_DECREF(tkey); return 0; }
    if (!found) {
        for (int i = 0; i < nk - 1; i++)
            if (!prepend_u16(s, key[i])) { Py_DECREF(tkey); return 0; }
        if (!prepend_u16(s, object_size) || !prepend_u16(s, (int64_t)(nk - 1 + 2) * 2)) {
            Py_DECREF(tkey);
            return 0;
        }
        int64_t object_start = s->len - object_offset;
        put_i32_at(s, object_start, offset(s) - object_offset);
        PyObject *v = PyLong_FromLongLong(offset(s));
        int bad = !v || PyDict_SetItem(vtables, tkey, v) != 0;
        Py_XDECREF(v);
        Py_DECREF(tkey);
        if (bad) return 0;
    } else {
        long long f = PyLong_AsLongLong(found);
        Py_DECREF(tkey);
        if (f == -1 && PyErr_Occurred()) return 0;
        s->head = s->len - object_offset;
        put_i32_at(s, s->head, f - object_offset);
    }
    *out = object_offset;
    return 1;
}

/* ---- reading the object's fields ---- */

/* An exact int (not bool, not numpy) in [lo, hi] into *out; 0 when not. */
static int int_in(PyObject *x, long long lo, long long hi, long long *out) {
    if (!x || !PyLong_CheckExact(x)) return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (overflow || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}
static int uint64_of(PyObject *x, unsigned long long *out) {
    if (!x || !PyLong_CheckExact(x)) return 0;
    unsigned long long v = PyLong_AsUnsignedLongLong(x);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
    *out = v;
    return 1;
}
static int bool_of(PyObject *x, long long *out) { /* True/False, or the ints 0 and 1 */
    if (x == Py_True) { *out = 1; return 1; }
    if (x == Py_False) { *out = 0; return 1; }
    return int_in(x, 0, 1, out);
}

/* Attributes of `obj` by name into a[] (new references; NULL on error). */
static int attrs(PyObject *obj, const char *const *names, int n, PyObject **a) {
    for (int i = 0; i < n; i++) {
        a[i] = PyObject_GetAttrString(obj, names[i]);
        if (!a[i]) {
            for (int j = 0; j < i; j++) Py_DECREF(a[j]);
            return 0;
        }
    }
    return 1;
}
static void attrs_free(PyObject **a, int n) {
    for (int i = 0; i < n; i++) Py_XDECREF(a[i]);
}

static PyObject *call_fallback(PyObject *fallback, PyObject *obj, PyObject *builder) {
    return PyObject_CallFunctionObjArgs(fallback, obj, builder, NULL);
}

/* Whether the builder is in the state the generated Pack starts from (not nested, no
 * forced defaults, its vtables a dict: *vtables, a new reference, NULL when not plain). */
static int builder_plain(PyObject *builder, int *plain, PyObject **vtables) {
    *vtables = NULL;
    PyObject *nested = PyObject_GetAttrString(builder, "nested");
    PyObject *force = nested ? PyObject_GetAttrString(builder, "forceDefaults") : NULL;
    PyObject *vt = force ? PyObject_GetAttrString(builder, "vtables") : NULL;
    if (!vt) { Py_XDECREF(nested); Py_XDECREF(force); return 0; }
    *plain = nested == Py_False && force == Py_False && PyDict_CheckExact(vt);
    Py_DECREF(nested);
    Py_DECREF(force);
    if (*plain) *vtables = vt;
    else Py_DECREF(vt);
    return 1;
}

static const char *const TENSOR_ATTRS[] = {
    "shape", "type", "buffer", "name", "quantization", "isVariable", "sparsity",
    "shapeSignature", "hasRank", "variantTensors", "externalBuffer"};
enum { T_SHAPE, T_TYPE, T_BUFFER, T_NAME, T_QUANT, T_VAR, T_SPARSITY, T_SIG, T_RANK, T_VARIANT,
       T_EXTERNAL, T_N };

PyObject *pack_tensor(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *builder, *obj, *fallback, *vtables = NULL;
    PyTypeObject *ndarray;
    if (!PyArg_ParseTuple(args, "OOO!O", &builder, &obj, &PyType_Type, &ndarray, &fallback))
        return NULL;
    PyObject *a[T_N];
    if (!attrs(obj, TENSOR_ATTRS, T_N, a)) return NULL;
    int plain;
    long long type, buffer, var, rank, external;
    const char *name = NULL;
    Py_ssize_t name_len = 0;
    Vec shape, sig;
    memset(&shape, 0, sizeof shape);
    memset(&sig, 0, sizeof sig);
    PyObject *result = NULL;
    int ok = builder_plain(builder, &plain, &vtables);
    if (!ok) goto done;
    int simple = plain && a[T_SPARSITY] == Py_None && a[T_VARIANT] == Py_None &&
                 int_in(a[T_TYPE], -128, 127, &type) && int_in(a[T_BUFFER], 0, 0xFFFFFFFFLL, &buffer) &&
                 bool_of(a[T_VAR], &var) && bool_of(a[T_RANK], &rank) &&
                 int_in(a[T_EXTERNAL], 0, 0xFFFFFFFFLL, &external);
    if (simple && a[T_NAME] != Py_None) {
        if (PyBytes_CheckExact(a[T_NAME])) {
            name = PyBytes_AS_STRING(a[T_NAME]);
            name_len = PyBytes_GET_SIZE(a[T_NAME]);
        } else if (PyUnicode_CheckExact(a[T_NAME])) {
            name = PyUnicode_AsUTF8AndSize(a[T_NAME], &name_len);
            if (!name) { PyErr_Clear(); simple = 0; }
        } else {
            simple = 0;
        }
    }
    if (simple) {
        int r1 = vec_of(a[T_SHAPE], ndarray, "i", 4, 1, &shape);
        int r2 = r1 == 1 ? vec_of(a[T_SIG], ndarray, "i", 4, 1, &sig) : 0;
        if (r1 < 0 || r2 < 0) goto done;
        simple = r1 == 1 && r2 == 1;
    }
    if (!simple) {
        result = call_fallback(fallback, obj, builder);
        goto done;
    }
    B s = {builder, NULL, 0, 0, 0};
    int64_t o_shape = 0, o_name = 0, o_quant = 0, o_sig = 0, table;
    Obj o;
    ok = b_load(&s) && (!shape.present || write_vec(&s, &shape, &o_shape)) &&
         (!name || write_string(&s, name, name_len, &o_name)) &&
         (a[T_QUANT] == Py_None || write_nested(&s, a[T_QUANT], &o_quant)) &&
         (!sig.present || write_vec(&s, &sig, &o_sig));
    if (ok) {
        start_object(&s, &o, 11);
        ok = slot_uoffset(&s, &o, 0, o_shape) &&
             slot_scalar(&s, &o, 1, 1, (uint64_t)(uint8_t)(int8_t)type, 0) &&
             slot_scalar(&s, &o, 2, 4, (uint64_t)buffer, 0) && slot_uoffset(&s, &o, 3, o_name) &&
             slot_uoffset(&s, &o, 4, o_quant) && slot_scalar(&s, &o, 5, 1, (uint64_t)var, 0) &&
             slot_uoffset(&s, &o, 7, o_sig) && slot_scalar(&s, &o, 8, 1, (uint64_t)rank, 0) &&
             slot_scalar(&s, &o, 10, 4, (uint64_t)external, 0) &&
             end_object(&s, &o, vtables, &table) && b_store(&s);
        if (ok) result = PyLong_FromLongLong(table);
    }
    Py_XDECREF(s.bytes);
done:
    Py_XDECREF(vtables);
    vec_free(&shape);
    vec_free(&sig);
    attrs_free(a, T_N);
    return result;
}

static const char *const OPERATOR_ATTRS[] = {
    "opcodeIndex", "inputs", "outputs", "builtinOptionsType", "builtinOptions",
    "customOptions", "customOptionsFormat", "mutatingVariableInputs", "intermediates",
    "largeCustomOptionsOffset", "largeCustomOptionsSize", "builtinOptions2Type",
    "builtinOptions2", "debugMetadataIndex"};
enum { O_OPCODE, O_INPUTS, O_OUTPUTS, O_OTYPE, O_OPTIONS, O_CUSTOM, O_FORMAT, O_MUTATING,
       O_INTER, O_LOFF, O_LSIZE, O_OTYPE2, O_OPTIONS2, O_DEBUG, O_N };

PyObject *pack_operator(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *builder, *obj, *fallback, *vtables = NULL;
    PyTypeObject *ndarray;
    if (!PyArg_ParseTuple(args, "OOO!O", &builder, &obj, &PyType_Type, &ndarray, &fallback))
        return NULL;
    PyObject *a[O_N];
    if (!attrs(obj, OPERATOR_ATTRS, O_N, a)) return NULL;
    int plain;
    long long opcode, otype, fmt, otype2, dbg;
    unsigned long long loff, lsize;
    Vec ins, outs, custom, mutating, inter;
    Vec *vecs[] = {&ins, &outs, &custom, &mutating, &inter};
    for (int i = 0; i < 5; i++) memset(vecs[i], 0, sizeof(Vec));
    PyObject *result = NULL;
    if (!builder_plain(builder, &plain, &vtables)) goto done;
    int simple = plain && a[O_OPTIONS2] == Py_None &&
                 int_in(a[O_OPCODE], 0, 0xFFFFFFFFLL, &opcode) && int_in(a[O_OTYPE], 0, 255, &otype) &&
                 int_in(a[O_FORMAT], -128, 127, &fmt) && uint64_of(a[O_LOFF], &loff) &&
                 uint64_of(a[O_LSIZE], &lsize) && int_in(a[O_OTYPE2], 0, 255, &otype2) &&
                 int_in(a[O_DEBUG], INT32_MIN, INT32_MAX, &dbg);
    if (simple) {
        int r[5];
        r[0] = vec_of(a[O_INPUTS], ndarray, "i", 4, 1, &ins);
        r[1] = r[0] == 1 ? vec_of(a[O_OUTPUTS], ndarray, "i", 4, 1, &outs) : 0;
        r[2] = r[1] == 1 ? vec_of(a[O_CUSTOM], ndarray, "B", 1, 0, &custom) : 0;
        r[3] = r[2] == 1 ? vec_of(a[O_MUTATING], ndarray, "?", 1, 0, &mutating) : 0;
        r[4] = r[3] == 1 ? vec_of(a[O_INTER], ndarray, "i", 4, 1, &inter) : 0;
        for (int i = 0; i < 5; i++) {
            if (r[i] < 0) goto done;
            if (r[i] != 1) simple = 0;
        }
    }
    if (!simple) {
        result = call_fallback(fallback, obj, builder);
        goto done;
    }
    B s = {builder, NULL, 0, 0, 0};
    int64_t o_in = 0, o_out = 0, o_opt = 0, o_cu = 0, o_mu = 0, o_it = 0, table;
    Obj o;
    int ok = b_load(&s) && (!ins.present || write_vec(&s, &ins, &o_in)) &&
             (!outs.present || write_vec(&s, &outs, &o_out)) &&
             (a[O_OPTIONS] == Py_None || write_nested(&s, a[O_OPTIONS], &o_opt)) &&
             (!custom.present || write_vec(&s, &custom, &o_cu)) &&
             (!mutating.present || write_vec(&s, &mutating, &o_mu)) &&
             (!inter.present || write_vec(&s, &inter, &o_it));
    if (ok) {
        start_object(&s, &o, 14);
        ok = slot_scalar(&s, &o, 0, 4, (uint64_t)opcode, 0) && slot_uoffset(&s, &o, 1, o_in) &&
             slot_uoffset(&s, &o, 2, o_out) && slot_scalar(&s, &o, 3, 1, (uint64_t)otype, 0) &&
             slot_uoffset(&s, &o, 4, o_opt) && slot_uoffset(&s, &o, 5, o_cu) &&
             slot_scalar(&s, &o, 6, 1, (uint64_t)(uint8_t)(int8_t)fmt, 0) &&
             slot_uoffset(&s, &o, 7, o_mu) && slot_uoffset(&s, &o, 8, o_it) &&
             slot_scalar(&s, &o, 9, 8, loff, 0) && slot_scalar(&s, &o, 10, 8, lsize, 0) &&
             slot_scalar(&s, &o, 11, 1, (uint64_t)otype2, 0) &&
             slot_scalar(&s, &o, 13, 4, (uint64_t)(uint32_t)(int32_t)dbg, (uint32_t)-1) &&
             end_object(&s, &o, vtables, &table) && b_store(&s);
        if (ok) result = PyLong_FromLongLong(table);
    }
    Py_XDECREF(s.bytes);
done:
    Py_XDECREF(vtables);
    for (int i = 0; i < 5; i++) vec_free(vecs[i]);
    attrs_free(a, O_N);
    return result;
}
