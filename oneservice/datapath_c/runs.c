/* Inner packets in runs by address: the twins of by_source and by_destination in
 * node/wire.py (the core then checks or routes once per run instead of once per packet). */
#include "datapath.h"

/* The packed source or destination address (as wire.address_bytes); 0 if malformed. */
static Py_ssize_t address_at(const unsigned char *packet, Py_ssize_t length, int source,
                             const unsigned char **address)
{
    if (length == 0)
        return 0;
    int version = packet[0] >> 4;
    if (version == 4 && length >= 20) {
        *address = packet + (source ? 12 : 16);
        return 4;
    }
    if (version == 6 && length >= 40) {
        *address = packet + (source ? 8 : 24);
        return 16;
    }
    return 0;
}

static int hint_fits(const unsigned char *packet, Py_ssize_t length, unsigned hint)
{
    Py_ssize_t start = (Py_ssize_t)(hint >> 8) * 2;
    unsigned offset = hint & 0xff;
    if ((offset != 16 && offset != 6) || start + (Py_ssize_t)offset + 2 > length)
        return 0;
    return packet[0] >> 4 == 4 ? start == (Py_ssize_t)(packet[0] & 0x0f) * 4 : start >= 40;
}

/* Runs of consecutive packets with one address: [(address, [(packet, hint)])]. With source,
 * packets with a malformed header or hint are counted in *malformed; otherwise those with
 * a malformed header are, and those longer than mtu in *oversize. */
static PyObject *runs_by_address(PyObject *given, int source, Py_ssize_t mtu,
                                 Py_ssize_t *malformed, Py_ssize_t *oversize)
{
    /* The last run's address is read from its packet while later ones are looked at: the
     * packets are held by a list of our own (nothing this runs can free one). */
    PyObject *packets = PyList_GetSlice(given, 0, PY_SSIZE_T_MAX);
    PyObject *runs = packets ? PyList_New(0) : NULL, *run = NULL;
    const unsigned char *last = NULL;
    Py_ssize_t last_length = 0;
    if (runs == NULL) {
        Py_XDECREF(packets);
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(packets);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(packets, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2
            || !PyBytes_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_TypeError, "packets are (bytes, hint) pairs");
            goto fail;
        }
        PyObject *packet_object = PyTuple_GET_ITEM(item, 0);
        const unsigned char *packet = (const unsigned char *)PyBytes_AS_STRING(packet_object);
        Py_ssize_t length = PyBytes_GET_SIZE(packet_object);
        const unsigned char *address;
        Py_ssize_t address_length = address_at(packet, length, source, &address);
        if (address_length == 0) {
            (*malformed)++;
            continue;
        }
        if (source) {
            PyObject *hint_object = PyTuple_GET_ITEM(item, 1);
            if (!PyLong_Check(hint_object)) {
                PyErr_SetString(PyExc_TypeError, "a hint is an int");
                goto fail;
            }
            unsigned long hint = PyLong_AsUnsignedLong(hint_object);
            if (hint == (unsigned long)-1 && PyErr_Occurred())
                goto fail;
            if (hint && (hint > 0xffff || !hint_fits(packet, length, (unsigned)hint))) {
                (*malformed)++;
                continue;
            }
        } else if (length > mtu) {
            (*oversize)++;
            continue;
        }
        if (last == NULL || address_length != last_length
            || memcmp(address, last, address_length) != 0) {
            PyObject *key = PyBytes_FromStringAndSize((const char *)address, address_length);
            run = PyList_New(0);
            PyObject *pair = key && run ? PyTuple_Pack(2, key, run) : NULL;
            Py_XDECREF(key);
            Py_XDECREF(run);  /* the pair holds it */
            if (pair == NULL)
                goto fail;
            int failed = PyList_Append(runs, pair);
            Py_DECREF(pair);
            if (failed < 0)
                goto fail;
            last = address;
            last_length = address_length;
        }
        if (PyList_Append(run, item) < 0)
            goto fail;
    }
    Py_DECREF(packets);
    return runs;
fail:
    Py_DECREF(packets);
    Py_DECREF(runs);
    return NULL;
}

PyObject *dp_by_source(PyObject *module, PyObject *args)
{
    PyObject *packets;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &packets))
        return NULL;
    Py_ssize_t malformed = 0, oversize = 0;
    PyObject *runs = runs_by_address(packets, 1, 0, &malformed, &oversize);
    return runs ? Py_BuildValue("(Nn)", runs, malformed) : NULL;
}

PyObject *dp_by_destination(PyObject *module, PyObject *args)
{
    PyObject *packets;
    Py_ssize_t mtu;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &packets, &mtu))
        return NULL;
    Py_ssize_t malformed = 0, oversize = 0;
    PyObject *runs = runs_by_address(packets, 0, mtu, &malformed, &oversize);
    return runs ? Py_BuildValue("(Nnn)", runs, malformed, oversize) : NULL;
}
