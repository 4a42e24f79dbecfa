/* The Sealer type: one direction's key, sealing data datagrams one by one, in runs of
 * packets, or straight from a TCP super-packet (its segments cut as segment.c cuts them).
 * Thin relay frames (their type in the header says so) are sealed as aead.c's dp_seal_thin. */
#include "datapath.h"

typedef struct {
    PyObject_HEAD
    Aead aead;
} Sealer;

static int key_from(PyObject *args, Py_buffer *key)
{
    if (!PyArg_ParseTuple(args, "y*", key))
        return -1;
    if (key->len != KEY_LEN) {
        PyBuffer_Release(key);
        PyErr_SetString(PyExc_ValueError, "a ChaCha20-Poly1305 key is 32 bytes");
        return -1;
    }
    return 0;
}

static int Sealer_init(Sealer *self, PyObject *args, PyObject *kwargs)
{
    Py_buffer key;
    if (key_from(args, &key) < 0)
        return -1;
    int failed = dp_aead_init(&self->aead, key.buf);
    PyBuffer_Release(&key);
    return failed;
}

static void Sealer_dealloc(Sealer *self)
{
    dp_aead_free(&self->aead);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *sealed(Aead *aead, const unsigned char *header, const Py_buffer *payload)
{
    if (payload->len > MAX_PAYLOAD) {
        PyErr_SetString(PyExc_ValueError, "payload too long for one datagram");
        return NULL;
    }
    PyObject *datagram = PyBytes_FromStringAndSize(NULL, HEADER_LEN + payload->len + TAG_LEN);
    if (datagram == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(datagram);
    memcpy(out, header, HEADER_LEN);
    const unsigned char *bytes = payload->buf;
    int failed;
    if (!IS_THIN(header[1]))
        failed = dp_seal_into(aead, out, bytes, payload->len, NULL, 0);
    else if (payload->len < ADDRESS_LEN) {
        PyErr_SetString(PyExc_ValueError, "a thin relay frame carries a data datagram");
        failed = -1;
    } else
        failed = dp_seal_thin(aead, out, bytes, bytes + ADDRESS_LEN, payload->len - ADDRESS_LEN);
    if (failed) {
        Py_DECREF(datagram);
        return NULL;
    }
    return datagram;
}

static PyObject *Sealer_seal(Sealer *self, PyObject *args)
{
    Py_buffer header, payload;
    if (!PyArg_ParseTuple(args, "y*y*", &header, &payload))
        return NULL;
    PyObject *result = NULL;
    if (header.len != HEADER_LEN)
        PyErr_SetString(PyExc_ValueError, "a data header is 16 bytes");
    else
        result = sealed(&self->aead, header.buf, &payload);
    PyBuffer_Release(&header);
    PyBuffer_Release(&payload);
    return result;
}

/* One (payload, hint) pair of seal_many, sealed. */
static PyObject *sealed_item(Sealer *self, PyObject *item, unsigned char *header, unsigned kind,
                             unsigned long remote_index, uint64_t counter)
{
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_SetString(PyExc_TypeError, "packets are (bytes, hint) pairs");
        return NULL;
    }
    long hint = dp_hint_of(PyTuple_GET_ITEM(item, 1));
    if (hint < 0)
        return NULL;
    Py_buffer payload;
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 0), &payload, PyBUF_SIMPLE) < 0)
        return NULL;
    dp_write_header(header, kind, (unsigned)hint, (uint32_t)remote_index, counter);
    PyObject *datagram = sealed(&self->aead, header, &payload);
    PyBuffer_Release(&payload);
    return datagram;
}

/* The header fields every batch call takes, in range: 0, or -1 with ValueError set.
 * ``thin_allowed``: the call may seal thin relay frames (seal_segments makes data). */
static int header_fields_valid(unsigned kind, unsigned long remote_index, int thin_allowed)
{
    if (kind > 0xff || remote_index > 0xffffffffUL || (!thin_allowed && IS_THIN(kind))) {
        PyErr_SetString(PyExc_ValueError, "type or index out of range (or a thin relay frame"
                                          " where only data can be sealed)");
        return -1;
    }
    return 0;
}

/* seal_many(kind, remote_index, counter, packets): one datagram per (payload, hint). */
static PyObject *Sealer_seal_many(Sealer *self, PyObject *args)
{
    unsigned int kind;
    unsigned long remote_index;
    unsigned long long counter;
    PyObject *packets;
    if (!PyArg_ParseTuple(args, "IkKO!", &kind, &remote_index, &counter, &PyList_Type, &packets))
        return NULL;
    if (header_fields_valid(kind, remote_index, 1) < 0)
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(packets);
    PyObject *datagrams = PyList_New(count);
    if (datagrams == NULL)
        return NULL;
    unsigned char header[HEADER_LEN];
    for (Py_ssize_t i = 0; i < count; i++) {
        /* Held while read: converting its hint or taking its buffer must not free it. */
        PyObject *item = Py_NewRef(PyList_GET_ITEM(packets, i));
        PyObject *datagram = sealed_item(self, item, header, kind, remote_index,
                                         (uint64_t)(counter + (unsigned long long)i));
        Py_DECREF(item);
        if (datagram == NULL)
            goto fail;
        PyList_SET_ITEM(datagrams, i, datagram);
    }
    return datagrams;
fail:
    Py_DECREF(datagrams);
    return NULL;
}

/* seal_segments(kind, remote_index, counter, packet, start, size, ecn) -> datagrams: the
 * super-packet cut as segment() cuts it, each segment sealed as seal_many seals it, without
 * making the segments themselves. */
static PyObject *Sealer_seal_segments(Sealer *self, PyObject *args)
{
    unsigned int kind;
    unsigned long remote_index;
    unsigned long long counter;
    Py_buffer view;
    Py_ssize_t start, size;
    int ecn;
    Cutter cut;
    if (!PyArg_ParseTuple(args, "IkKy*nnp", &kind, &remote_index, &counter, &view, &start,
                          &size, &ecn))
        return NULL;
    PyObject *datagrams = NULL;
    if (header_fields_valid(kind, remote_index, 0) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (dp_cutter_start(&cut, view.buf, view.len, start, size, ecn) < 0)
        goto done;
    Py_ssize_t count = dp_cutter_count(&cut);
    datagrams = PyList_New(count);
    for (Py_ssize_t number = 0; datagrams != NULL && number < count; number++) {
        Py_ssize_t chunk = dp_cutter_headers(&cut, number);
        Py_ssize_t length = cut.header_len + chunk;
        if (length > MAX_PAYLOAD) {
            PyErr_SetString(PyExc_ValueError, "segment too long for one datagram");
            Py_CLEAR(datagrams);
            break;
        }
        PyObject *datagram = PyBytes_FromStringAndSize(NULL, HEADER_LEN + length + TAG_LEN);
        if (datagram == NULL) {
            Py_CLEAR(datagrams);
            break;
        }
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(datagram);
        dp_write_header(out, kind, cut.hint, (uint32_t)remote_index,
                     (uint64_t)(counter + (unsigned long long)number));
        if (dp_seal_into(&self->aead, out, cut.header, cut.header_len,
                         cut.packet + cut.header_len + number * size, chunk) < 0) {
            Py_DECREF(datagram);
            Py_CLEAR(datagrams);
            break;
        }
        PyList_SET_ITEM(datagrams, number, datagram);
    }
done:
    PyMem_Free(cut.header);
    PyBuffer_Release(&view);
    return datagrams;
}

/* One relay frame of seal_frames: ``datagram`` from ``offset`` on, behind ``address``. */
static PyObject *sealed_frame(Sealer *self, PyObject *datagram, unsigned kind,
                              unsigned long remote_index, uint64_t counter,
                              const unsigned char *address, Py_ssize_t offset)
{
    if (!PyBytes_Check(datagram)) {
        PyErr_SetString(PyExc_TypeError, "datagrams are bytes");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(datagram);
    Py_ssize_t length = PyBytes_GET_SIZE(datagram) - offset;
    if (length < 0 || ADDRESS_LEN + length > MAX_PAYLOAD) {
        PyErr_SetString(PyExc_ValueError, "a datagram shorter than the offset, or too long");
        return NULL;
    }
    PyObject *frame = PyBytes_FromStringAndSize(NULL, THIN_OVERHEAD + length);
    if (frame == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
    dp_write_header(out, kind, 0, (uint32_t)remote_index, counter);
    int failed = IS_THIN(kind)
                     ? dp_seal_thin(&self->aead, out, address, data + offset, length)
                     : dp_seal_into(&self->aead, out, address, ADDRESS_LEN, data + offset, length);
    if (failed) {
        Py_DECREF(frame);
        return NULL;
    }
    return frame;
}

/* seal_frames(kind, remote_index, counter, address, datagrams, offset) -> frames: as
 * seal_many of (address + datagram[offset:], 0) for each, without making those payloads: a
 * root puts the source's address where the destination's was (offset 5), a member puts the
 * destination's in front (offset 0). */
static PyObject *Sealer_seal_frames(Sealer *self, PyObject *args)
{
    unsigned int kind;
    unsigned long remote_index;
    unsigned long long counter;
    Py_buffer address;
    PyObject *datagrams;
    Py_ssize_t offset;
    if (!PyArg_ParseTuple(args, "IkKy*O!n", &kind, &remote_index, &counter, &address,
                          &PyList_Type, &datagrams, &offset))
        return NULL;
    PyObject *frames = NULL;
    if (header_fields_valid(kind, remote_index, 1) < 0)
        goto done;
    if (address.len != ADDRESS_LEN || offset < 0) {
        PyErr_SetString(PyExc_ValueError, "an address is 5 bytes, an offset at least 0");
        goto done;
    }
    Py_ssize_t count = PyList_GET_SIZE(datagrams);
    frames = PyList_New(count);
    for (Py_ssize_t i = 0; frames != NULL && i < count; i++) {
        /* Held while read: allocating the frame must not free it. */
        PyObject *datagram = Py_NewRef(PyList_GET_ITEM(datagrams, i));
        PyObject *frame = sealed_frame(self, datagram, kind, remote_index,
                                       (uint64_t)(counter + (unsigned long long)i), address.buf,
                                       offset);
        Py_DECREF(datagram);
        if (frame == NULL)
            Py_CLEAR(frames);
        else
            PyList_SET_ITEM(frames, i, frame);
    }
done:
    PyBuffer_Release(&address);
    return frames;
}

static PyMethodDef Sealer_methods[] = {
    {"seal", (PyCFunction)Sealer_seal, METH_VARARGS,
     "seal(header, payload) -> datagram: the 16-byte header, then the payload sealed."},
    {"seal_many", (PyCFunction)Sealer_seal_many, METH_VARARGS,
     "seal_many(kind, remote_index, counter, packets) -> datagrams, one per (payload, hint),"
     " with counters from counter on."},
    {"seal_frames", (PyCFunction)Sealer_seal_frames, METH_VARARGS,
     "seal_frames(kind, remote_index, counter, address, datagrams, offset) -> frames: as"
     " seal_many of (address + datagram[offset:], 0) for each."},
    {"seal_segments", (PyCFunction)Sealer_seal_segments, METH_VARARGS,
     "seal_segments(kind, remote_index, counter, packet, start, size, ecn) -> datagrams:"
     " a TCP super-packet cut (as segment()) and each segment sealed (as seal_many)."},
    {NULL}
};

PyTypeObject dp_sealer_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "oneservice._datapath.Sealer",
    .tp_doc = "Sealer(key): one direction's key, sealing data datagrams.",
    .tp_basicsize = sizeof(Sealer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Sealer_init,
    .tp_dealloc = (destructor)Sealer_dealloc,
    .tp_methods = Sealer_methods,
};
