/* The Opener type: the receiving direction's key and its replay window (2048 counters, as
 * WireGuard's and node/session.py's), opening datagrams one by one, in a list, or where they
 * lie in the buffer of one UDP GRO read. */
#include "datapath.h"

#define WINDOW_BITS 2048
#define WINDOW_WORDS (WINDOW_BITS / 64)

typedef struct {
    PyObject_HEAD
    Aead aead;
    uint32_t local_index;
    int seen_any;          /* highest is meaningful */
    uint64_t highest;
    uint64_t bitmap[WINDOW_WORDS]; /* a ring: see window_seen_or_too_old */
} Opener;

static int Opener_init(Opener *self, PyObject *args, PyObject *kwargs)
{
    Py_buffer key;
    unsigned long local_index;
    if (!PyArg_ParseTuple(args, "y*k", &key, &local_index))
        return -1;
    if (key.len != KEY_LEN || local_index > 0xffffffffUL) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "a 32-byte key and a 32-bit index");
        return -1;
    }
    int failed = dp_aead_init(&self->aead, key.buf);
    PyBuffer_Release(&key);
    if (failed)
        return -1;
    self->local_index = (uint32_t)local_index;
    self->seen_any = 0;
    self->highest = 0;
    memset(self->bitmap, 0, sizeof(self->bitmap));
    return 0;
}

static void Opener_dealloc(Opener *self)
{
    dp_aead_free(&self->aead);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The window is a ring: counter c's bit is bit c % WINDOW_BITS, meaningful while
 * highest - c < WINDOW_BITS. Moving highest on clears only the bits of the counters passed
 * (one, in order), where shifting the whole bitmap cost 32 words per packet. */
static int window_seen_or_too_old(const Opener *self, uint64_t counter)
{
    if (!self->seen_any || counter > self->highest)
        return 0;
    if (self->highest - counter >= WINDOW_BITS)
        return 1;
    unsigned bit = (unsigned)(counter % WINDOW_BITS);
    return (self->bitmap[bit / 64] >> (bit % 64)) & 1;
}

/* Forget counters from .. from + count - 1 (they now stand for counters WINDOW_BITS on). */
static void window_clear(Opener *self, uint64_t from, uint64_t count)
{
    if (count >= WINDOW_BITS) {
        memset(self->bitmap, 0, sizeof(self->bitmap));
        return;
    }
    while (count > 0) {
        unsigned bit = (unsigned)(from % WINDOW_BITS) % 64;
        uint64_t run = 64 - bit < count ? 64 - bit : count;
        uint64_t mask = (run == 64 ? ~(uint64_t)0 : ((uint64_t)1 << run) - 1) << bit;
        self->bitmap[(from % WINDOW_BITS) / 64] &= ~mask;
        from += run;
        count -= run;
    }
}

/* Record an authenticated counter; 0 if it was a replay after all. */
static int window_mark(Opener *self, uint64_t counter)
{
    if (window_seen_or_too_old(self, counter))
        return 0;
    if (!self->seen_any || counter > self->highest) {
        /* With nothing seen the bitmap is empty: nothing to clear. */
        if (self->seen_any)
            window_clear(self, self->highest + 1, counter - self->highest);
        self->highest = counter;
        self->seen_any = 1;
    }
    unsigned bit = (unsigned)(counter % WINDOW_BITS);
    self->bitmap[bit / 64] |= (uint64_t)1 << (bit % 64);
    return 1;
}

/* The plaintext (of a thin relay frame: its address and data datagram), or NULL without an
 * exception set when the datagram is forged. */
static PyObject *opened(Opener *self, const unsigned char *data, Py_ssize_t length)
{
    PyObject *plaintext = PyBytes_FromStringAndSize(NULL, length - HEADER_LEN - TAG_LEN);
    if (plaintext == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(plaintext);
    if ((IS_THIN(data[1]) ? dp_open_thin(&self->aead, data, length, out)
                          : dp_open_into(&self->aead, data, length, out)) != 0) {
        Py_DECREF(plaintext);
        return NULL;
    }
    return plaintext;
}

static PyObject *Opener_open(Opener *self, PyObject *args)
{
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    PyObject *result;
    if (data.len < HEADER_LEN + TAG_LEN || data.len > MAX_DATAGRAM) {
        result = Py_NewRef(Py_None);
    } else {
        result = opened(self, data.buf, data.len);
        if (result == NULL && !PyErr_Occurred())
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&data);
    return result;
}

static int counter_from(PyObject *args, uint64_t *counter)
{
    unsigned long long value;
    if (!PyArg_ParseTuple(args, "K", &value))
        return -1;
    *counter = (uint64_t)value;
    return 0;
}

static PyObject *Opener_seen_or_too_old(Opener *self, PyObject *args)
{
    uint64_t counter;
    if (counter_from(args, &counter) < 0)
        return NULL;
    return PyBool_FromLong(window_seen_or_too_old(self, counter));
}

static PyObject *Opener_mark(Opener *self, PyObject *args)
{
    uint64_t counter;
    if (counter_from(args, &counter) < 0)
        return NULL;
    return PyBool_FromLong(window_mark(self, counter));
}

/* What open_many and open_coalesced gather. */
typedef struct {
    PyObject *opened, *others;
    Py_ssize_t authenticated, replayed, forged;
} Batch;

/* One datagram of a batch; ``item`` is it as an object, or NULL (a slice is made if needed).
 * Datagrams of type ``kind`` for this opener's index are opened: data into (packet, hint)
 * pairs (keepalives counted, not delivered), other kinds (relay frames) into their payloads.
 * -1 with an exception set on failure. */
static int open_into_batch(Opener *self, Batch *batch, const unsigned char *data,
                           Py_ssize_t length, PyObject *item, int kind)
{
    if (length < HEADER_LEN + TAG_LEN || length > MAX_DATAGRAM || data[0] != PROTOCOL_VERSION
        || data[1] != kind || get_le32(data + 4) != self->local_index) {
        PyObject *other = item ? Py_NewRef(item)
                               : PyBytes_FromStringAndSize((const char *)data, length);
        if (other == NULL)
            return -1;
        int failed = PyList_Append(batch->others, other);
        Py_DECREF(other);
        return failed;
    }
    uint64_t counter = get_le64(data + 8);
    if (window_seen_or_too_old(self, counter)) {
        batch->replayed++;
        return 0;
    }
    PyObject *plaintext = opened(self, data, length);
    if (plaintext == NULL) {
        if (PyErr_Occurred())
            return -1;
        batch->forged++;
        return 0;
    }
    if (!window_mark(self, counter)) {
        Py_DECREF(plaintext);
        batch->replayed++;
        return 0;
    }
    batch->authenticated++;
    if (kind != TYPE_DATA) {
        int failed = PyList_Append(batch->opened, plaintext);
        Py_DECREF(plaintext);
        return failed;
    }
    if (PyBytes_GET_SIZE(plaintext) == 0) {  /* a keepalive: nothing to deliver */
        Py_DECREF(plaintext);
        return 0;
    }
    PyObject *pair = Py_BuildValue("(Ni)", plaintext, data[2] | data[3] << 8);
    if (pair == NULL)
        return -1;
    int failed = PyList_Append(batch->opened, pair);
    Py_DECREF(pair);
    return failed;
}

static int batch_start(Batch *batch)
{
    *batch = (Batch){PyList_New(0), PyList_New(0), 0, 0, 0};
    return batch->opened && batch->others ? 0 : -1;
}

static PyObject *batch_result(Batch *batch, int failed)
{
    if (failed) {
        Py_XDECREF(batch->opened);
        Py_XDECREF(batch->others);
        return NULL;
    }
    return Py_BuildValue("(NnNnn)", batch->opened, batch->authenticated, batch->others,
                         batch->replayed, batch->forged);
}

/* The datagrams of a list, each opened as open_into_batch does with ``kind``. */
static PyObject *open_list(Opener *self, PyObject *datagrams, int kind)
{
    Batch batch;
    int failed = batch_start(&batch);
    Py_ssize_t count = PyList_GET_SIZE(datagrams);
    for (Py_ssize_t i = 0; i < count && !failed; i++) {
        /* Held while read: what the batch allocates must not free it. */
        PyObject *item = Py_NewRef(PyList_GET_ITEM(datagrams, i));
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "datagrams are bytes");
            failed = -1;
        } else {
            failed = open_into_batch(self, &batch, (const unsigned char *)PyBytes_AS_STRING(item),
                                     PyBytes_GET_SIZE(item), item, kind);
        }
        Py_DECREF(item);
    }
    return batch_result(&batch, failed);
}

/* open_many(datagrams) -> (opened, authenticated, others, replayed, forged) */
static PyObject *Opener_open_many(Opener *self, PyObject *args)
{
    PyObject *datagrams;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &datagrams))
        return NULL;
    return open_list(self, datagrams, TYPE_DATA);
}

/* open_frames(datagrams, kind) -> (payloads, authenticated, others, replayed, forged): as
 * open_many, for the relay frames of ``kind`` (node/wire.py), whose payloads are returned. */
static PyObject *Opener_open_frames(Opener *self, PyObject *args)
{
    PyObject *datagrams;
    int kind;
    if (!PyArg_ParseTuple(args, "O!i", &PyList_Type, &datagrams, &kind))
        return NULL;
    if (kind < 0 || kind > 255 || kind == TYPE_DATA) {
        PyErr_SetString(PyExc_ValueError, "open_frames is for relay frames: open_many opens data");
        return NULL;
    }
    return open_list(self, datagrams, kind);
}

/* open_coalesced(data, size, kind=TYPE_DATA): as open_many(wire.split_coalesced(data, size))
 * (or open_frames of them, for relay frames of ``kind``), without the copies: the datagrams
 * are read where they lie in the buffer of one GRO read. */
static PyObject *Opener_open_coalesced(Opener *self, PyObject *args)
{
    PyObject *data;
    Py_ssize_t size;
    int kind = TYPE_DATA;
    Batch batch;
    if (!PyArg_ParseTuple(args, "O!n|i", &PyBytes_Type, &data, &size, &kind))
        return NULL;
    if (kind < 0 || kind > 255) {
        PyErr_SetString(PyExc_ValueError, "kind is a datagram type (0-255)");
        return NULL;
    }
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t length = PyBytes_GET_SIZE(data);
    int failed = batch_start(&batch);
    if (size <= 0 || length <= size) {
        if (!failed)
            failed = open_into_batch(self, &batch, bytes, length, data, kind);
        return batch_result(&batch, failed);
    }
    for (Py_ssize_t at = 0; at < length && !failed; at += size) {
        Py_ssize_t piece = length - at < size ? length - at : size;
        failed = open_into_batch(self, &batch, bytes + at, piece, NULL, kind);
    }
    return batch_result(&batch, failed);
}

static PyMethodDef Opener_methods[] = {
    {"open", (PyCFunction)Opener_open, METH_VARARGS,
     "open(datagram) -> plaintext, or None if forged or corrupted (the window is not touched)."},
    {"seen_or_too_old", (PyCFunction)Opener_seen_or_too_old, METH_VARARGS,
     "seen_or_too_old(counter) -> bool: the cheap check before decrypting."},
    {"mark", (PyCFunction)Opener_mark, METH_VARARGS,
     "mark(counter) -> bool: record an authenticated counter; False if it was a replay."},
    {"open_many", (PyCFunction)Opener_open_many, METH_VARARGS,
     "open_many(datagrams) -> (opened, authenticated, others, replayed, forged)."},
    {"open_frames", (PyCFunction)Opener_open_frames, METH_VARARGS,
     "open_frames(datagrams, kind) -> (payloads, authenticated, others, replayed, forged)."},
    {"open_coalesced", (PyCFunction)Opener_open_coalesced, METH_VARARGS,
     "open_coalesced(data, size): open_many of the datagrams of one GRO read, in place."},
    {NULL}
};

PyTypeObject dp_opener_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "oneservice._datapath.Opener",
    .tp_doc = "Opener(key, local_index): one direction's key and its replay window.",
    .tp_basicsize = sizeof(Opener),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Opener_init,
    .tp_dealloc = (destructor)Opener_dealloc,
    .tp_methods = Opener_methods,
};
