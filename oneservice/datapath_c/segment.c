/* TUN offloads, sending: a TCP super-packet cut into segments with partial checksums, the
 * twin of offload.py's python_segment (same input, same bytes: tests/unit/test_datapath.py).
 * The Sealer seals the segments straight from the cutter (sealer.c). */
#include "datapath.h"

static unsigned partial_hint(Py_ssize_t start, unsigned offset)
{
    if (start & 1 || start > 510)
        return 0;
    return (unsigned)(start >> 1) << 8 | offset;
}

/* Cutting a super-packet into segments: the headers of each in turn, as offload._segment.
 * 0, or -1 with ValueError (the super-packet is not one we can cut) or MemoryError. */
int dp_cutter_start(Cutter *cut, const unsigned char *packet, Py_ssize_t length,
                    Py_ssize_t start, Py_ssize_t size, int ecn)
{
    cut->header = NULL;
    int version = length ? packet[0] >> 4 : 0;
    Py_ssize_t expected_start = version == 4 ? (Py_ssize_t)(packet[0] & 0x0f) * 4 : 40;
    if (length == 0 || size <= 0 || length > MAX_DATAGRAM || start < 0 || start + 20 > length
        || start < expected_start || (version == 4 && start != expected_start)) {
        PyErr_SetString(PyExc_ValueError, "TCP header not where the super-packet says");
        return -1;
    }
    Py_ssize_t header_len = start + (packet[start + 12] >> 4) * 4;
    if (header_len < start + 20) {
        PyErr_SetString(PyExc_ValueError, "TCP header shorter than its fixed part");
        return -1;
    }
    if (header_len >= length) {
        PyErr_SetString(PyExc_ValueError, "TCP super-packet without payload");
        return -1;
    }
    cut->header = PyMem_Malloc(header_len);
    if (cut->header == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(cut->header, packet, header_len);
    cut->packet = packet;
    cut->start = start;
    cut->size = size;
    cut->header_len = header_len;
    cut->total = length - header_len;
    cut->last_at = (cut->total - 1) / size * size;
    cut->version = version;
    cut->ecn = ecn;
    cut->pseudo = pseudo_sum(packet);
    cut->seq = get_be32(packet + start + 4);
    cut->flags = packet[start + 13];
    cut->hint = partial_hint(start, 16);
    cut->first_id = 0;
    cut->rest = 0;
    if (version == 4) {
        /* Only the length and the ID change from segment to segment. */
        cut->first_id = get_be16(packet + 4);
        memset(cut->header + 2, 0, 4);
        memset(cut->header + 10, 0, 2);
        cut->rest = ones_sum(cut->header, start);
    }
    return 0;
}

Py_ssize_t dp_cutter_count(const Cutter *cut)
{
    return cut->last_at / cut->size + 1;
}

/* The headers of segment ``number`` (its payload at ``number * size``) into cut->header;
 * returns the length of its payload. */
Py_ssize_t dp_cutter_headers(Cutter *cut, Py_ssize_t number)
{
    Py_ssize_t at = number * cut->size, start = cut->start;
    int last = at == cut->last_at;
    Py_ssize_t chunk = last ? cut->total - at : cut->size;
    Py_ssize_t length = cut->header_len + chunk;
    unsigned char *header = cut->header;
    if (cut->version == 4) {
        unsigned ip_id = (cut->first_id + (unsigned)number) & 0xffff;
        put_be16(header + 2, (unsigned)length);
        put_be16(header + 4, ip_id);
        put_be16(header + 10, checksum_of(cut->rest + (uint64_t)length + ip_id));
    } else {
        put_be16(header + 4, (unsigned)(length - 40));
    }
    put_be32(header + start + 4, cut->seq + (uint32_t)at);
    unsigned flags = last ? cut->flags : cut->flags & ~(TCP_FIN | TCP_PSH);
    header[start + 13] = (unsigned char)(cut->ecn && number ? flags & ~TCP_CWR : flags);
    put_be16(header + start + 16, (unsigned)((cut->pseudo + (uint64_t)(length - start)) % 0xffff));
    return chunk;
}


/* segment(packet, start, size, ecn) -> [(segment, hint)]; ValueError as offload._segment. */
PyObject *dp_segment(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, size;
    int ecn;
    Cutter cut;
    if (!PyArg_ParseTuple(args, "y*nnp", &view, &start, &size, &ecn))
        return NULL;
    PyObject *segments = NULL;
    if (dp_cutter_start(&cut, view.buf, view.len, start, size, ecn) < 0)
        goto done;
    Py_ssize_t count = dp_cutter_count(&cut);
    segments = PyList_New(count);
    for (Py_ssize_t number = 0; segments != NULL && number < count; number++) {
        Py_ssize_t chunk = dp_cutter_headers(&cut, number);
        PyObject *segment = PyBytes_FromStringAndSize(NULL, cut.header_len + chunk);
        PyObject *pair = segment ? Py_BuildValue("(NI)", segment, cut.hint) : NULL;
        if (pair == NULL) {
            Py_CLEAR(segments);
            break;
        }
        memcpy(PyBytes_AS_STRING(segment), cut.header, cut.header_len);
        memcpy(PyBytes_AS_STRING(segment) + cut.header_len,
               cut.packet + cut.header_len + number * size, chunk);
        PyList_SET_ITEM(segments, number, pair);
    }
done:
    PyMem_Free(cut.header);
    PyBuffer_Release(&view);
    return segments;
}

