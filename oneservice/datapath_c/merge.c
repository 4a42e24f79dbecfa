/* TUN offloads, receiving: the segments of each TCP flow in a batch merged into one
 * super-packet per write, the twin of offload.py's python_merge (which explains it; same
 * input, same bytes: tests/unit/test_datapath.py). merge returns a merged frame as one
 * buffer; write_merged writes each frame to the device from its pieces where they lie. */
#include "datapath.h"

#include <errno.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_MERGED_BYTES 65535

typedef struct {
    Py_ssize_t first;       /* index of its first packet */
    Py_ssize_t last;        /* index of its last packet (for the chain) */
    Py_ssize_t start, header_len, size, total, count;
    uint32_t next_seq;
    unsigned push;
    int closed;
    unsigned hint;          /* the first packet's, used while it is alone */
} Flow;

typedef struct {
    const unsigned char *data;
    Py_ssize_t length;
    unsigned hint;
    Py_ssize_t next;        /* next packet of the same flow, -1 at the end */
} Piece;

/* What merge writes, in order: a packet alone (flow < 0) or a flow's frame. */
typedef struct {
    Py_ssize_t packet;
    Py_ssize_t flow;
} Out;

static Py_ssize_t key_of(const unsigned char *packet, Py_ssize_t start, const unsigned char **key)
{
    *key = start == 20 ? packet + 12 : packet + 8;
    return start == 20 ? 12 : 36;
}

static uint64_t key_hash(const unsigned char *key, Py_ssize_t length)
{
    uint64_t hash = 1469598103934665603ULL;  /* FNV-1a */
    for (Py_ssize_t i = 0; i < length; i++)
        hash = (hash ^ key[i]) * 1099511628211ULL;
    return hash;
}

/* Open addressing over flow indexes: -1 empty, -2 deleted. */
typedef struct {
    Py_ssize_t *slots;
    Py_ssize_t mask;
} Table;

static Py_ssize_t *table_find(Table *table, const Flow *flows, const Piece *pieces,
                              const unsigned char *key, Py_ssize_t key_length, int for_insert)
{
    Py_ssize_t at = (Py_ssize_t)(key_hash(key, key_length) & (uint64_t)table->mask);
    Py_ssize_t *free_slot = NULL;
    for (;;) {
        Py_ssize_t *slot = &table->slots[at];
        if (*slot == -1)
            return for_insert ? (free_slot ? free_slot : slot) : NULL;
        if (*slot == -2) {
            if (free_slot == NULL)
                free_slot = slot;
        } else {
            const Flow *flow = &flows[*slot];
            const unsigned char *other;
            Py_ssize_t other_length = key_of(pieces[flow->first].data, flow->start, &other);
            if (other_length == key_length && memcmp(other, key, key_length) == 0)
                return slot;
        }
        at = (at + 1) & table->mask;
    }
}

/* The virtio header and, for a flow, the first packet's headers made the super-packet's:
 * what a frame starts with, then its packets' bytes where they lie. */
#define MAX_HEAD (VNET_HDR_LEN + 40 + 60)  /* IPv6, or IPv4 with options, and TCP's 60 */

/* A frame as the parts of one writev: iov[0] is ``head`` (filled here), then the packet, or
 * each of the flow's packets after its headers. The number of parts. */
static int frame_parts(Out out, const Flow *flows, const Piece *pieces, unsigned char *head,
                       struct iovec *iov)
{
    uint16_t fields[4] = {0, 0, 0, 0};  /* hdr_len, gso_size, csum_start, csum_offset */
    if (out.flow < 0 || flows[out.flow].count == 1) {
        const Piece *piece = &pieces[out.packet];
        head[0] = piece->hint ? NEEDS_CSUM : 0;
        head[1] = GSO_NONE;
        if (piece->hint) {
            fields[2] = (uint16_t)((piece->hint >> 8) * 2);
            fields[3] = (uint16_t)(piece->hint & 0xff);
        }
        memcpy(head + 2, fields, 8);  /* native byte order, as struct "=" */
        iov[0] = (struct iovec){head, VNET_HDR_LEN};
        iov[1] = (struct iovec){(void *)piece->data, (size_t)piece->length};
        return 2;
    }
    const Flow *flow = &flows[out.flow];
    const unsigned char *first = pieces[flow->first].data;
    Py_ssize_t start = flow->start, header_len = flow->header_len;
    unsigned char *header = head + VNET_HDR_LEN;
    memcpy(header, first, header_len);
    unsigned gso_type;
    if (first[0] >> 4 == 4) {
        put_be16(header + 2, (unsigned)flow->total);
        memset(header + 10, 0, 2);
        put_be16(header + 10, checksum_of(ones_sum(header, start)));
        gso_type = GSO_TCPV4;
    } else {
        put_be16(header + 4, (unsigned)(flow->total - 40));
        gso_type = GSO_TCPV6;
    }
    header[start + 13] |= (unsigned char)flow->push;
    put_be16(header + start + 16,
             (unsigned)((pseudo_sum(first) + (uint64_t)(flow->total - start)) % 0xffff));
    head[0] = NEEDS_CSUM;
    head[1] = (unsigned char)gso_type;
    fields[0] = (uint16_t)header_len;
    fields[1] = (uint16_t)flow->size;
    fields[2] = (uint16_t)start;
    fields[3] = 16;
    memcpy(head + 2, fields, 8);
    iov[0] = (struct iovec){head, (size_t)(VNET_HDR_LEN + header_len)};
    int parts = 1;
    for (Py_ssize_t i = flow->first; i >= 0; i = pieces[i].next)
        iov[parts++] = (struct iovec){(void *)(pieces[i].data + header_len),
                                      (size_t)(pieces[i].length - header_len)};
    return parts;
}

/* The parts joined: into ``out`` if given, else into a new bytes object (NULL on failure). */
static PyObject *joined(const struct iovec *iov, int parts, unsigned char *out)
{
    Py_ssize_t length = 0;
    for (int i = 0; i < parts; i++)
        length += (Py_ssize_t)iov[i].iov_len;
    PyObject *frame = out ? NULL : PyBytes_FromStringAndSize(NULL, length);
    if (!out && frame == NULL)
        return NULL;
    unsigned char *at = out ? out : (unsigned char *)PyBytes_AS_STRING(frame);
    for (int i = 0; i < parts; i++) {
        memcpy(at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    return frame;
}

/* The frames a batch of packets makes, in order: see offload.merge. */
typedef struct {
    PyObject *packets;  /* the caller's, in a list of our own (see plan_merge) */
    Py_ssize_t count, out_count;
    Piece *pieces;
    Flow *flows;
    Out *outs;
    struct iovec *iov;  /* room for the parts of the largest frame */
} Plan;

static void plan_free(Plan *plan)
{
    PyMem_Free(plan->pieces);
    PyMem_Free(plan->flows);
    PyMem_Free(plan->outs);
    PyMem_Free(plan->iov);
    Py_XDECREF(plan->packets);
}

/* 0, or -1 with an exception set (the plan freed). */
static int plan_merge(PyObject *given, Plan *plan)
{
    /* The packets are read from where they lie until the frames are made: held by a list of
     * our own, so that nothing this runs (a hint's conversion, an allocation's collection)
     * can free one by changing the caller's list. */
    *plan = (Plan){0};
    PyObject *packets = plan->packets = PyList_GetSlice(given, 0, PY_SSIZE_T_MAX);
    if (packets == NULL)
        return -1;
    Py_ssize_t count = plan->count = PyList_GET_SIZE(packets);
    Piece *pieces = plan->pieces = PyMem_Malloc(sizeof(Piece) * (count ? count : 1));
    Flow *flows = plan->flows = PyMem_Malloc(sizeof(Flow) * (count ? count : 1));
    Out *outs = plan->outs = PyMem_Malloc(sizeof(Out) * (count ? count : 1));
    plan->iov = PyMem_Malloc(sizeof(struct iovec) * (count + 2));
    Table table = {NULL, 0};
    Py_ssize_t capacity = 16;
    while (capacity < 2 * count)
        capacity <<= 1;
    table.slots = PyMem_Malloc(sizeof(Py_ssize_t) * capacity);
    table.mask = capacity - 1;
    int failed = -1;
    Py_ssize_t flow_count = 0, out_count = 0;
    if (pieces == NULL || flows == NULL || outs == NULL || plan->iov == NULL
        || table.slots == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < capacity; i++)
        table.slots[i] = -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(packets, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2
            || !PyBytes_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_TypeError, "packets are (bytes, hint) pairs");
            goto done;
        }
        long hint = dp_hint_of(PyTuple_GET_ITEM(item, 1));
        if (hint < 0)
            goto done;
        Piece *piece = &pieces[i];
        piece->data = (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 0));
        piece->length = PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 0));
        piece->hint = (unsigned)hint;
        piece->next = -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        const unsigned char *packet = pieces[i].data;
        Py_ssize_t length = pieces[i].length, start;
        unsigned version = length >= 40 ? packet[0] : 0;
        if (version == 0x45 && packet[9] == 6 && !((packet[6] & 0x3f) || packet[7])
            && get_be16(packet + 2) == length)
            start = 20;
        else if (version >> 4 == 6 && length >= 60 && packet[6] == 6
                 && get_be16(packet + 4) == length - 40)
            start = 40;
        else {
            outs[out_count++] = (Out){i, -1};
            continue;
        }
        Py_ssize_t header_len = start + (packet[start + 12] >> 4) * 4;
        Py_ssize_t size = length - header_len;
        if (size < 0 || header_len < start + 20) {
            outs[out_count++] = (Out){i, -1};
            continue;
        }
        uint32_t seq = get_be32(packet + start + 4);
        unsigned flags = packet[start + 13];
        const unsigned char *key;
        Py_ssize_t key_length = key_of(packet, start, &key);
        Py_ssize_t *slot = table_find(&table, flows, pieces, key, key_length, 0);
        if (slot != NULL) {
            Flow *flow = &flows[*slot];
            const unsigned char *first = pieces[flow->first].data;
            int takes = seq == flow->next_seq && size > 0 && size <= flow->size
                        && !(flags & ~(TCP_ACK | TCP_PSH)) && header_len == flow->header_len
                        && flow->total + size <= MAX_MERGED_BYTES;
            if (takes) {
                if (start == 20)
                    takes = packet[1] == first[1] && packet[6] == first[6]
                            && packet[8] == first[8];
                else
                    takes = packet[7] == first[7] && memcmp(packet, first, 4) == 0;
                takes = takes && memcmp(packet + start + 8, first + start + 8, 4) == 0
                        && (header_len == start + 20
                            || memcmp(packet + start + 20, first + start + 20,
                                      header_len - start - 20) == 0);
            }
            if (takes) {
                pieces[flow->last].next = i;
                flow->last = i;
                flow->count++;
                flow->total += size;
                flow->next_seq = flow->next_seq + (uint32_t)size;
                flow->push = flags & TCP_PSH;
                flow->closed = flow->push || size < flow->size;
                if (flow->closed)
                    *slot = -2;
                continue;
            }
            *slot = -2;  /* a later segment must not pass this packet */
        }
        if (!size || (flags & ~(TCP_ACK | TCP_PSH)) || !(flags & TCP_ACK)) {
            outs[out_count++] = (Out){i, -1};
            continue;
        }
        Flow *flow = &flows[flow_count];
        *flow = (Flow){.first = i, .last = i, .start = start, .header_len = header_len,
                       .size = size, .total = length, .count = 1,
                       .next_seq = seq + (uint32_t)size, .push = flags & TCP_PSH,
                       .closed = (flags & TCP_PSH) != 0, .hint = pieces[i].hint};
        outs[out_count++] = (Out){i, flow_count};
        if (!flow->closed)
            *table_find(&table, flows, pieces, key, key_length, 1) = flow_count;
        flow_count++;
    }
    plan->out_count = out_count;
    failed = 0;
done:
    PyMem_Free(table.slots);
    if (failed)
        plan_free(plan);
    return failed;
}

/* merge(packets) -> frames, each [one buffer]: see offload.merge. */
PyObject *dp_merge(PyObject *module, PyObject *args)
{
    PyObject *given;
    Plan plan;
    unsigned char head[MAX_HEAD];
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &given) || plan_merge(given, &plan) < 0)
        return NULL;
    PyObject *frames = PyList_New(plan.out_count);
    for (Py_ssize_t n = 0; frames != NULL && n < plan.out_count; n++) {
        int parts = frame_parts(plan.outs[n], plan.flows, plan.pieces, head, plan.iov);
        PyObject *frame = joined(plan.iov, parts, NULL);
        PyObject *buffers = frame ? PyList_New(1) : NULL;
        if (buffers == NULL) {
            Py_XDECREF(frame);
            Py_CLEAR(frames);
            break;
        }
        PyList_SET_ITEM(buffers, 0, frame);
        PyList_SET_ITEM(frames, n, buffers);
    }
    plan_free(&plan);
    return frames;
}

/* write_merged(fd, packets) -> (frames, failed): merge's frames written to the device, each
 * with one writev of its parts where they lie (no frame is copied together first: that copy
 * and the 64 KiB buffer it filled were 3-5 % of a receiving node's time). A write the kernel
 * refuses is counted in ``failed``, never raised, as offload.python_write_merged does. */
PyObject *dp_write_merged(PyObject *module, PyObject *args)
{
    PyObject *given;
    int fd;
    Plan plan;
    unsigned char head[MAX_HEAD];
    if (!PyArg_ParseTuple(args, "iO!", &fd, &PyList_Type, &given) || plan_merge(given, &plan) < 0)
        return NULL;
    Py_ssize_t failed = 0;
    unsigned char *whole = NULL;  /* a frame of more parts than one writev takes */
    for (Py_ssize_t n = 0; n < plan.out_count; n++) {
        int parts = frame_parts(plan.outs[n], plan.flows, plan.pieces, head, plan.iov);
        ssize_t written;
        if (parts > IOV_MAX) {
            if (whole == NULL && (whole = PyMem_Malloc(MAX_HEAD + MAX_MERGED_BYTES)) == NULL) {
                failed++;
                continue;
            }
            size_t length = 0;
            for (int i = 0; i < parts; i++)
                length += plan.iov[i].iov_len;
            joined(plan.iov, parts, whole);
            plan.iov[0] = (struct iovec){whole, length};
            parts = 1;
        }
        Py_BEGIN_ALLOW_THREADS
        do {
            written = writev(fd, plan.iov, parts);
        } while (written < 0 && errno == EINTR);
        Py_END_ALLOW_THREADS
        if (written < 0)
            failed++;
    }
    PyMem_Free(whole);
    Py_ssize_t frames = plan.out_count;
    plan_free(&plan);
    return Py_BuildValue("(nn)", frames, failed);
}
