/*
 * oneservice._datapath: the data path's batches in C, one extension made of these files,
 * each with one job (the pure-Python twins, and what each call does: oneservice/node/aead.py,
 * oneservice/offload.py, oneservice/node/wire.py):
 *   aead.c     ChaCha20-Poly1305 of one datagram, from OpenSSL's ChaCha20 and Poly1305
 *   sealer.c   the Sealer type: one direction's key, sealing datagrams one by one or in runs
 *   opener.c   the Opener type: the other direction's key, the replay window, batches
 *   segment.c  TUN offloads, sending: a TCP super-packet cut into segments
 *   merge.c    TUN offloads, receiving: the segments of each TCP flow merged for one write
 *   runs.c     inner packets in runs by address
 *   module.c   the module: its types, functions and CryptoError
 * Every Python object whose memory a call reads is held by a reference of its own for as long
 * as the call reads it (nothing it calls can free it), and every length is checked where the
 * buffer it bounds is written.
 */
#ifndef ONESERVICE_DATAPATH_H
#define ONESERVICE_DATAPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

/* Data datagram (docs/PROTOCOL.md):
 *   version (1) | type (1) | hint (2, LE) | receiver index (4, LE) | counter (8, LE) | AEAD
 * The 16-byte header is the associated data; the nonce is 4 zero bytes + the counter bytes. */
#define HEADER_LEN 16
#define TAG_LEN 16
#define KEY_LEN 32
#define PROTOCOL_VERSION 1
#define TYPE_DATA 3
/* Thin relay frames: a data datagram behind a 5-byte address, of which only the address is
 * encrypted; the tag also covers the data datagram's header and tag (aead.c). */
#define TYPE_RELAY_THIN 9
#define TYPE_RELAYED_THIN 10
#define IS_THIN(kind) ((kind) == TYPE_RELAY_THIN || (kind) == TYPE_RELAYED_THIN)
#define ADDRESS_LEN 5
#define THIN_OVERHEAD (HEADER_LEN + ADDRESS_LEN + TAG_LEN)
#define MAX_DATAGRAM 65535
#define MAX_PAYLOAD (MAX_DATAGRAM - HEADER_LEN - TAG_LEN)

/* TUN offloads (virtio_net_hdr; oneservice/offload.py). */
#define VNET_HDR_LEN 10
#define NEEDS_CSUM 0x01
#define GSO_NONE 0
#define GSO_TCPV4 1
#define GSO_TCPV6 4
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80

extern PyObject *dp_crypto_error;  /* oneservice._datapath.CryptoError */
extern PyTypeObject dp_sealer_type, dp_opener_type;

/* aead.c */
typedef struct {
    EVP_CIPHER_CTX *chacha;  /* ChaCha20 with the key set; only the nonce changes per packet */
} Aead;  /* (Poly1305's context is aead.c's, one for all) */

int dp_aead_load(void);  /* at import: 0, or -1 with ImportError set */
int dp_aead_init(Aead *aead, const unsigned char *key);
void dp_aead_free(Aead *aead);
void dp_write_header(unsigned char *out, unsigned kind, unsigned hint, uint32_t index,
                     uint64_t counter);
int dp_seal_into(Aead *aead, unsigned char *out, const unsigned char *first,
                 Py_ssize_t first_length, const unsigned char *second, Py_ssize_t second_length);
int dp_open_into(Aead *aead, const unsigned char *data, Py_ssize_t length, unsigned char *out);
int dp_seal_thin(Aead *aead, unsigned char *out, const unsigned char *address,
                 const unsigned char *inner, Py_ssize_t inner_length);
int dp_open_thin(Aead *aead, const unsigned char *data, Py_ssize_t length, unsigned char *out);

/* segment.c */
typedef struct {
    const unsigned char *packet;
    Py_ssize_t start, size, header_len, total, last_at;
    int version, ecn;
    unsigned flags, hint, first_id;
    uint64_t pseudo, rest;
    uint32_t seq;
    unsigned char *header;  /* the segment's headers, rewritten for each */
} Cutter;

int dp_cutter_start(Cutter *cut, const unsigned char *packet, Py_ssize_t length,
                    Py_ssize_t start, Py_ssize_t size, int ecn);
Py_ssize_t dp_cutter_count(const Cutter *cut);
Py_ssize_t dp_cutter_headers(Cutter *cut, Py_ssize_t number);
PyObject *dp_segment(PyObject *module, PyObject *args);

/* merge.c, runs.c */
PyObject *dp_merge(PyObject *module, PyObject *args);
PyObject *dp_write_merged(PyObject *module, PyObject *args);
PyObject *dp_by_source(PyObject *module, PyObject *args);
PyObject *dp_by_destination(PyObject *module, PyObject *args);

/* A hint (where a partial checksum is): an int of two bytes. -1 with an exception set if
 * it is not; never runs Python code (no __index__ of another type). */
static inline long dp_hint_of(PyObject *object)
{
    if (!PyLong_Check(object)) {
        PyErr_SetString(PyExc_TypeError, "a hint is an int");
        return -1;
    }
    unsigned long hint = PyLong_AsUnsignedLong(object);
    if (hint == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (hint > 0xffff) {
        PyErr_SetString(PyExc_ValueError, "a hint is two bytes");
        return -1;
    }
    return (long)hint;
}

/* Byte order helpers. */
static inline void put_le16(unsigned char *at, unsigned value)
{
    at[0] = value & 0xff;
    at[1] = (value >> 8) & 0xff;
}

static inline void put_le32(unsigned char *at, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        at[i] = (value >> (8 * i)) & 0xff;
}

static inline void put_le64(unsigned char *at, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        at[i] = (value >> (8 * i)) & 0xff;
}

static inline uint32_t get_le32(const unsigned char *at)
{
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

static inline uint64_t get_le64(const unsigned char *at)
{
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--)
        value = value << 8 | at[i];
    return value;
}

static inline uint16_t get_be16(const unsigned char *at)
{
    return (uint16_t)(at[0] << 8 | at[1]);
}

static inline uint32_t get_be32(const unsigned char *at)
{
    return (uint32_t)at[0] << 24 | (uint32_t)at[1] << 16 | (uint32_t)at[2] << 8 | at[3];
}

static inline void put_be16(unsigned char *at, unsigned value)
{
    at[0] = (value >> 8) & 0xff;
    at[1] = value & 0xff;
}

static inline void put_be32(unsigned char *at, uint32_t value)
{
    put_be16(at, value >> 16);
    put_be16(at + 2, value & 0xffff);
}

/* Internet checksums (as offload.py's): the 16-bit ones' complement sum mod 0xffff (odd
 * length padded), the field for a sum, and the TCP pseudo-header's addresses and protocol. */
static inline uint64_t ones_sum(const unsigned char *data, Py_ssize_t length)
{
    uint64_t total = 0;
    Py_ssize_t i = 0;
    for (; i + 1 < length; i += 2)
        total += (uint64_t)(data[i] << 8 | data[i + 1]);
    if (i < length)
        total += (uint64_t)data[i] << 8;
    return total % 0xffff;
}

static inline unsigned checksum_of(uint64_t sum)
{
    uint64_t folded = sum % 0xffff;
    return (unsigned)(0xffff - (folded ? folded : 0xffff));
}

static inline uint64_t pseudo_sum(const unsigned char *packet)
{
    return (packet[0] >> 4 == 4 ? ones_sum(packet + 12, 8) : ones_sum(packet + 8, 32)) + 6;
}

#endif
