/*
 * oneservice._datapath: the data path's ChaCha20-Poly1305 in batches, over OpenSSL's EVP.
 *
 * The pure-Python twin is oneservice/node/aead.py; both produce the same bytes (a property
 * test feeds random batches through both) and have the same interface, described there.
 * What this adds is speed: one ChaCha20 and one Poly1305 context per direction, kept for the
 * session's life (only the nonce changes per packet), and one call per batch instead of
 * several per packet. Needs OpenSSL 3.0 or newer (EVP_MAC).
 * Modelled on aioquic's src/aioquic/_crypto.c.
 *
 * Data datagram (docs/PROTOCOL.md):
 *   version (1) | type (1) | hint (2, LE) | receiver index (4, LE) | counter (8, LE) | AEAD
 * The 16-byte header is the associated data; the nonce is 4 zero bytes + the counter bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#define HEADER_LEN 16
#define TAG_LEN 16
#define KEY_LEN 32
#define PROTOCOL_VERSION 1
#define TYPE_DATA 3
/* As node/session.py: 2048 counters, the same window as WireGuard. */
#define WINDOW_BITS 2048
#define WINDOW_WORDS (WINDOW_BITS / 64)
#define MAX_PAYLOAD (65535 - HEADER_LEN - TAG_LEN)

static PyObject *CryptoError;

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

static void put_le16(unsigned char *at, unsigned value)
{
    at[0] = value & 0xff;
    at[1] = (value >> 8) & 0xff;
}

static void put_le32(unsigned char *at, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        at[i] = (value >> (8 * i)) & 0xff;
}

static void put_le64(unsigned char *at, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        at[i] = (value >> (8 * i)) & 0xff;
}

static uint32_t get_le32(const unsigned char *at)
{
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

static uint64_t get_le64(const unsigned char *at)
{
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--)
        value = value << 8 | at[i];
    return value;
}

/* RFC 8439's ChaCha20-Poly1305 from OpenSSL's ChaCha20 and Poly1305 rather than its AEAD.
 * The AEAD makes a short keystream call for the Poly1305 key block, one for a payload's last
 * partial block and one more per extra piece of input, and on an AVX-512 machine each such
 * call costs about as much as a third of a 1,420-byte packet's whole cipher (a C loop over
 * EVP, docs/PERFORMANCE.md). Here one call makes the keystream of the key block and the
 * whole payload, the payload is XORed with it, and Poly1305 runs over what went out. */
typedef struct {
    EVP_CIPHER_CTX *chacha;  /* ChaCha20 with the key set; only the nonce changes per packet */
    EVP_MAC_CTX *poly;
} Aead;

static EVP_MAC *poly1305;  /* fetched once, at import */

/* Block 0 (its first 32 bytes are the Poly1305 key) and the payload's blocks, made from
 * zeros. The GIL is held throughout, so one buffer serves every packet. */
#define BLOCK 64
#define STREAM_LEN (BLOCK + ((MAX_PAYLOAD + BLOCK - 1) / BLOCK) * BLOCK)
static const unsigned char zeros[STREAM_LEN];
static unsigned char stream[STREAM_LEN];

static void aead_free(Aead *aead)
{
    EVP_CIPHER_CTX_free(aead->chacha);
    EVP_MAC_CTX_free(aead->poly);
    aead->chacha = NULL;
    aead->poly = NULL;
}

/* 0, or -1 with CryptoError set. */
static int aead_init(Aead *aead, const unsigned char *key)
{
    static const unsigned char no_nonce[16] = {0};
    aead_free(aead);
    aead->chacha = EVP_CIPHER_CTX_new();
    aead->poly = EVP_MAC_CTX_new(poly1305);
    if (aead->chacha == NULL || aead->poly == NULL
        || !EVP_EncryptInit_ex(aead->chacha, EVP_chacha20(), NULL, key, no_nonce)) {
        aead_free(aead);
        PyErr_SetString(CryptoError, "OpenSSL refused the ChaCha20-Poly1305 key");
        return -1;
    }
    return 0;
}

/* The keystream for a payload of ``length`` bytes under the nonce 4 zero bytes + ``counter``
 * (8 bytes, as in the header) into ``stream``: block 0, then the payload's from offset 64. */
static int keystream(Aead *aead, const unsigned char *counter, Py_ssize_t length)
{
    /* EVP's ChaCha20 IV: the 32-bit block counter (LE), then RFC 8439's 12-byte nonce. */
    unsigned char iv[16] = {0};
    int written;
    memcpy(iv + 8, counter, 8);
    int blocks = (int)(BLOCK + (length + BLOCK - 1) / BLOCK * BLOCK);
    return EVP_EncryptInit_ex(aead->chacha, NULL, NULL, NULL, iv)
               && EVP_EncryptUpdate(aead->chacha, stream, &written, zeros, blocks)
           ? 0 : -1;
}

/* 16 bytes at a time: GCC and Clang make this one SSE2 XOR per step
 * where a plain byte or word loop stays scalar at -O2. */
typedef uint64_t Lanes __attribute__((vector_size(16)));

static void xor_stream(unsigned char *out, const unsigned char *in, const unsigned char *key,
                       Py_ssize_t length)
{
    Py_ssize_t i = 0;
    for (; i + (Py_ssize_t)sizeof(Lanes) <= length; i += sizeof(Lanes)) {
        Lanes word, mask;
        memcpy(&word, in + i, sizeof word);
        memcpy(&mask, key + i, sizeof mask);
        word ^= mask;
        memcpy(out + i, &word, sizeof word);
    }
    for (; i < length; i++)
        out[i] = in[i] ^ key[i];
}

/* RFC 8439's tag over the 16-byte header (associated data) and the ciphertext, keyed from
 * block 0 of ``stream``, which is wiped afterwards (a one-time key, never left behind). */
static int tag(Aead *aead, const unsigned char *header, const unsigned char *ciphertext,
               Py_ssize_t length, unsigned char *out)
{
    static const unsigned char padding[16] = {0};
    unsigned char lengths[16];
    size_t written;
    put_le64(lengths, HEADER_LEN);
    put_le64(lengths + 8, (uint64_t)length);
    /* The header is 16 bytes: it needs no padding. */
    int ok = EVP_MAC_init(aead->poly, stream, 32, NULL)
             && EVP_MAC_update(aead->poly, header, HEADER_LEN)
             && EVP_MAC_update(aead->poly, ciphertext, (size_t)length)
             && EVP_MAC_update(aead->poly, padding, (16 - (size_t)length % 16) % 16)
             && EVP_MAC_update(aead->poly, lengths, 16)
             && EVP_MAC_final(aead->poly, out, &written, TAG_LEN);
    OPENSSL_cleanse(stream, 32);
    return ok ? 0 : -1;
}

/* ----------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Aead aead;
} Sealer;

static int Sealer_init(Sealer *self, PyObject *args, PyObject *kwargs)
{
    Py_buffer key;
    if (key_from(args, &key) < 0)
        return -1;
    int failed = aead_init(&self->aead, key.buf);
    PyBuffer_Release(&key);
    return failed;
}

static void Sealer_dealloc(Sealer *self)
{
    aead_free(&self->aead);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void write_header(unsigned char *out, unsigned kind, unsigned hint, uint32_t index,
                         uint64_t counter)
{
    out[0] = PROTOCOL_VERSION;
    out[1] = (unsigned char)kind;
    put_le16(out + 2, hint);
    put_le32(out + 4, index);
    put_le64(out + 8, counter);
}

/* The header (16 bytes, already at out), then the payload given in two pieces (the second
 * may be empty), sealed: out gets header, ciphertext, tag. */
static int seal_into(Aead *aead, unsigned char *out, const unsigned char *first,
                     Py_ssize_t first_length, const unsigned char *second,
                     Py_ssize_t second_length)
{
    Py_ssize_t length = first_length + second_length;
    unsigned char *ciphertext = out + HEADER_LEN;
    int failed = keystream(aead, out + 8, length);
    if (!failed) {
        xor_stream(ciphertext, first, stream + BLOCK, first_length);
        xor_stream(ciphertext + first_length, second, stream + BLOCK + first_length,
                   second_length);
        failed = tag(aead, out, ciphertext, length, ciphertext + length);
    }
    if (failed)
        PyErr_SetString(CryptoError, "OpenSSL failed to seal");
    return failed;
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
    if (seal_into(aead, out, payload->buf, payload->len, NULL, 0) < 0) {
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

/* seal_many(kind, remote_index, counter, packets): one datagram per (payload, hint). */
static PyObject *Sealer_seal_many(Sealer *self, PyObject *args)
{
    unsigned int kind;
    unsigned long remote_index;
    unsigned long long counter;
    PyObject *packets;
    if (!PyArg_ParseTuple(args, "IkKO!", &kind, &remote_index, &counter, &PyList_Type, &packets))
        return NULL;
    if (kind > 0xff || remote_index > 0xffffffffUL) {
        PyErr_SetString(PyExc_ValueError, "type or index out of range");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(packets);
    PyObject *datagrams = PyList_New(count);
    if (datagrams == NULL)
        return NULL;
    unsigned char header[HEADER_LEN];
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(packets, i);
        PyObject *packet, *hint_object;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "packets are (bytes, hint) pairs");
            goto fail;
        }
        packet = PyTuple_GET_ITEM(item, 0);
        hint_object = PyTuple_GET_ITEM(item, 1);
        unsigned long hint = PyLong_AsUnsignedLong(hint_object);
        if (hint == (unsigned long)-1 && PyErr_Occurred())
            goto fail;
        if (hint > 0xffff) {
            PyErr_SetString(PyExc_ValueError, "a hint is two bytes");
            goto fail;
        }
        Py_buffer payload;
        if (PyObject_GetBuffer(packet, &payload, PyBUF_SIMPLE) < 0)
            goto fail;
        write_header(header, kind, (unsigned)hint, (uint32_t)remote_index,
                     (uint64_t)(counter + (unsigned long long)i));
        PyObject *datagram = sealed(&self->aead, header, &payload);
        PyBuffer_Release(&payload);
        if (datagram == NULL)
            goto fail;
        PyList_SET_ITEM(datagrams, i, datagram);
    }
    return datagrams;
fail:
    Py_DECREF(datagrams);
    return NULL;
}

static PyObject *Sealer_seal_segments(Sealer *self, PyObject *args);

static PyMethodDef Sealer_methods[] = {
    {"seal", (PyCFunction)Sealer_seal, METH_VARARGS,
     "seal(header, payload) -> datagram: the 16-byte header, then the payload sealed."},
    {"seal_many", (PyCFunction)Sealer_seal_many, METH_VARARGS,
     "seal_many(kind, remote_index, counter, packets) -> datagrams, one per (payload, hint),"
     " with counters from counter on."},
    {"seal_segments", (PyCFunction)Sealer_seal_segments, METH_VARARGS,
     "seal_segments(kind, remote_index, counter, packet, start, size, ecn) -> datagrams:"
     " a TCP super-packet cut (as segment()) and each segment sealed (as seal_many)."},
    {NULL}
};

static PyTypeObject SealerType = {
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

/* ----------------------------------------------------------------------------------------- */

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
    int failed = aead_init(&self->aead, key.buf);
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
    aead_free(&self->aead);
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

/* Authenticate and decrypt data[16:] with the header as associated data into out: 0, 1 if
 * forged (out untouched), -1 with CryptoError set if OpenSSL fails. */
static int open_into(Aead *aead, const unsigned char *data, Py_ssize_t length,
                     unsigned char *out)
{
    Py_ssize_t body = length - HEADER_LEN - TAG_LEN;
    unsigned char expected[TAG_LEN];
    if (keystream(aead, data + 8, body) < 0
        || tag(aead, data, data + HEADER_LEN, body, expected) < 0) {
        PyErr_SetString(CryptoError, "OpenSSL failed to open");
        return -1;
    }
    if (CRYPTO_memcmp(expected, data + HEADER_LEN + body, TAG_LEN) != 0)
        return 1;
    xor_stream(out, data + HEADER_LEN, stream + BLOCK, body);
    return 0;
}

/* The plaintext, or NULL without an exception set when the datagram is forged. */
static PyObject *opened(Opener *self, const unsigned char *data, Py_ssize_t length)
{
    PyObject *plaintext = PyBytes_FromStringAndSize(NULL, length - HEADER_LEN - TAG_LEN);
    if (plaintext == NULL)
        return NULL;
    if (open_into(&self->aead, data, length, (unsigned char *)PyBytes_AS_STRING(plaintext)) != 0) {
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
    if (data.len < HEADER_LEN + TAG_LEN || data.len > 65535) {
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
 * -1 with an exception set on failure. */
static int open_into_batch(Opener *self, Batch *batch, const unsigned char *data,
                           Py_ssize_t length, PyObject *item)
{
    if (length < HEADER_LEN + TAG_LEN || length > 65535 || data[0] != PROTOCOL_VERSION
        || data[1] != TYPE_DATA || get_le32(data + 4) != self->local_index) {
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

/* open_many(datagrams) -> (opened, authenticated, others, replayed, forged) */
static PyObject *Opener_open_many(Opener *self, PyObject *args)
{
    PyObject *datagrams;
    Batch batch;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &datagrams))
        return NULL;
    int failed = batch_start(&batch);
    Py_ssize_t count = PyList_GET_SIZE(datagrams);
    for (Py_ssize_t i = 0; i < count && !failed; i++) {
        PyObject *item = PyList_GET_ITEM(datagrams, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "datagrams are bytes");
            failed = -1;
            break;
        }
        failed = open_into_batch(self, &batch, (const unsigned char *)PyBytes_AS_STRING(item),
                                 PyBytes_GET_SIZE(item), item);
    }
    return batch_result(&batch, failed);
}

/* open_coalesced(data, size): as open_many(wire.split_coalesced(data, size)), without the
 * copies: the datagrams are read where they lie in the buffer of one GRO read. */
static PyObject *Opener_open_coalesced(Opener *self, PyObject *args)
{
    PyObject *data;
    Py_ssize_t size;
    Batch batch;
    if (!PyArg_ParseTuple(args, "O!n", &PyBytes_Type, &data, &size))
        return NULL;
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t length = PyBytes_GET_SIZE(data);
    int failed = batch_start(&batch);
    if (size <= 0 || length <= size) {
        if (!failed)
            failed = open_into_batch(self, &batch, bytes, length, data);
        return batch_result(&batch, failed);
    }
    for (Py_ssize_t at = 0; at < length && !failed; at += size) {
        Py_ssize_t piece = length - at < size ? length - at : size;
        failed = open_into_batch(self, &batch, bytes + at, piece, NULL);
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
    {"open_coalesced", (PyCFunction)Opener_open_coalesced, METH_VARARGS,
     "open_coalesced(data, size): open_many of the datagrams of one GRO read, in place."},
    {NULL}
};

static PyTypeObject OpenerType = {
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

/* -----------------------------------------------------------------------------------------
 * TUN offloads: the twins of python_segment and python_merge in oneservice/offload.py, which
 * explains them. Same input, same bytes out (tests/unit/test_datapath.py); a merged frame comes back
 * as one buffer rather than a list of pieces.
 */

#define VNET_HDR_LEN 10
#define NEEDS_CSUM 0x01
#define GSO_NONE 0
#define GSO_TCPV4 1
#define GSO_TCPV6 4
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80
#define MAX_MERGED_BYTES 65535

static uint16_t get_be16(const unsigned char *at) { return (uint16_t)(at[0] << 8 | at[1]); }

static uint32_t get_be32(const unsigned char *at)
{
    return (uint32_t)at[0] << 24 | (uint32_t)at[1] << 16 | (uint32_t)at[2] << 8 | at[3];
}

static void put_be16(unsigned char *at, unsigned value)
{
    at[0] = (value >> 8) & 0xff;
    at[1] = value & 0xff;
}

static void put_be32(unsigned char *at, uint32_t value)
{
    put_be16(at, value >> 16);
    put_be16(at + 2, value & 0xffff);
}

/* The 16-bit ones' complement sum mod 0xffff (as offload._ones_sum: odd length padded). */
static uint64_t ones_sum(const unsigned char *data, Py_ssize_t length)
{
    uint64_t total = 0;
    Py_ssize_t i = 0;
    for (; i + 1 < length; i += 2)
        total += (uint64_t)(data[i] << 8 | data[i + 1]);
    if (i < length)
        total += (uint64_t)data[i] << 8;
    return total % 0xffff;
}

static unsigned checksum_of(uint64_t sum)
{
    uint64_t folded = sum % 0xffff;
    return (unsigned)(0xffff - (folded ? folded : 0xffff));
}

static uint64_t pseudo_sum(const unsigned char *packet)
{
    return (packet[0] >> 4 == 4 ? ones_sum(packet + 12, 8) : ones_sum(packet + 8, 32)) + 6;
}

static unsigned partial_hint(Py_ssize_t start, unsigned offset)
{
    if (start & 1 || start > 510)
        return 0;
    return (unsigned)(start >> 1) << 8 | offset;
}

/* Cutting a super-packet into segments: the headers of each in turn, as offload._segment. */
typedef struct {
    const unsigned char *packet;
    Py_ssize_t start, size, header_len, total, last_at;
    int version, ecn;
    unsigned flags, hint, first_id;
    uint64_t pseudo, rest;
    uint32_t seq;
    unsigned char *header;  /* the segment's headers, rewritten for each */
} Cutter;

/* 0, or -1 with ValueError (the super-packet is not one we can cut) or MemoryError. */
static int cutter_start(Cutter *cut, const unsigned char *packet, Py_ssize_t length,
                        Py_ssize_t start, Py_ssize_t size, int ecn)
{
    cut->header = NULL;
    int version = length ? packet[0] >> 4 : 0;
    Py_ssize_t expected_start = version == 4 ? (Py_ssize_t)(packet[0] & 0x0f) * 4 : 40;
    if (length == 0 || size <= 0 || length > 65535 || start < 0 || start + 20 > length
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

static Py_ssize_t cutter_count(const Cutter *cut)
{
    return cut->last_at / cut->size + 1;
}

/* The headers of segment ``number`` (its payload at ``number * size``) into cut->header;
 * returns the length of its payload. */
static Py_ssize_t cutter_headers(Cutter *cut, Py_ssize_t number)
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
static PyObject *datapath_segment(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, size;
    int ecn;
    Cutter cut;
    if (!PyArg_ParseTuple(args, "y*nnp", &view, &start, &size, &ecn))
        return NULL;
    PyObject *segments = NULL;
    if (cutter_start(&cut, view.buf, view.len, start, size, ecn) < 0)
        goto done;
    Py_ssize_t count = cutter_count(&cut);
    segments = PyList_New(count);
    for (Py_ssize_t number = 0; segments != NULL && number < count; number++) {
        Py_ssize_t chunk = cutter_headers(&cut, number);
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
    if (kind > 0xff || remote_index > 0xffffffffUL) {
        PyErr_SetString(PyExc_ValueError, "type or index out of range");
        PyBuffer_Release(&view);
        return NULL;
    }
    if (cutter_start(&cut, view.buf, view.len, start, size, ecn) < 0)
        goto done;
    Py_ssize_t count = cutter_count(&cut);
    datagrams = PyList_New(count);
    for (Py_ssize_t number = 0; datagrams != NULL && number < count; number++) {
        Py_ssize_t chunk = cutter_headers(&cut, number);
        Py_ssize_t length = cut.header_len + chunk;
        PyObject *datagram = PyBytes_FromStringAndSize(NULL, HEADER_LEN + length + TAG_LEN);
        if (datagram == NULL) {
            Py_CLEAR(datagrams);
            break;
        }
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(datagram);
        write_header(out, kind, cut.hint, (uint32_t)remote_index,
                     (uint64_t)(counter + (unsigned long long)number));
        if (seal_into(&self->aead, out, cut.header, cut.header_len,
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

static PyObject *single_frame(const Piece *piece)
{
    PyObject *frame = PyBytes_FromStringAndSize(NULL, VNET_HDR_LEN + piece->length);
    if (frame == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
    uint16_t fields[4] = {0, 0, 0, 0};  /* hdr_len, gso_size, csum_start, csum_offset */
    out[0] = piece->hint ? NEEDS_CSUM : 0;
    out[1] = GSO_NONE;
    if (piece->hint) {
        fields[2] = (uint16_t)((piece->hint >> 8) * 2);
        fields[3] = (uint16_t)(piece->hint & 0xff);
    }
    memcpy(out + 2, fields, 8);  /* native byte order, as struct "=" */
    memcpy(out + VNET_HDR_LEN, piece->data, piece->length);
    return frame;
}

static PyObject *flow_frame(const Flow *flow, const Piece *pieces)
{
    const unsigned char *first = pieces[flow->first].data;
    Py_ssize_t start = flow->start, header_len = flow->header_len;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, VNET_HDR_LEN + flow->total);
    if (frame == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
    unsigned char *header = out + VNET_HDR_LEN;
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
    out[0] = NEEDS_CSUM;
    out[1] = (unsigned char)gso_type;
    uint16_t fields[4] = {(uint16_t)header_len, (uint16_t)flow->size, (uint16_t)start, 16};
    memcpy(out + 2, fields, 8);
    unsigned char *at = header + header_len;
    for (Py_ssize_t i = flow->first; i >= 0; i = pieces[i].next) {
        Py_ssize_t chunk = pieces[i].length - header_len;
        memcpy(at, pieces[i].data + header_len, chunk);
        at += chunk;
    }
    return frame;
}

/* merge(packets) -> frames, each [one buffer]: see offload.merge. */
static PyObject *datapath_merge(PyObject *module, PyObject *args)
{
    PyObject *packets;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &packets))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(packets);
    Piece *pieces = PyMem_Malloc(sizeof(Piece) * (count ? count : 1));
    Flow *flows = PyMem_Malloc(sizeof(Flow) * (count ? count : 1));
    Out *outs = PyMem_Malloc(sizeof(Out) * (count ? count : 1));
    Table table = {NULL, 0};
    Py_ssize_t capacity = 16;
    while (capacity < 2 * count)
        capacity <<= 1;
    table.slots = PyMem_Malloc(sizeof(Py_ssize_t) * capacity);
    table.mask = capacity - 1;
    PyObject *frames = NULL;
    Py_ssize_t flow_count = 0, out_count = 0;
    if (pieces == NULL || flows == NULL || outs == NULL || table.slots == NULL) {
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
        unsigned long hint = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 1));
        if (hint == (unsigned long)-1 && PyErr_Occurred())
            goto done;
        if (hint > 0xffff) {
            PyErr_SetString(PyExc_ValueError, "a hint is two bytes");
            goto done;
        }
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
    frames = PyList_New(out_count);
    if (frames == NULL)
        goto done;
    for (Py_ssize_t n = 0; n < out_count; n++) {
        Out out = outs[n];
        PyObject *frame = out.flow < 0 || flows[out.flow].count == 1
                              ? single_frame(&pieces[out.packet])
                              : flow_frame(&flows[out.flow], pieces);
        PyObject *buffers = frame ? PyList_New(1) : NULL;
        if (buffers == NULL) {
            Py_XDECREF(frame);
            Py_CLEAR(frames);
            goto done;
        }
        PyList_SET_ITEM(buffers, 0, frame);
        PyList_SET_ITEM(frames, n, buffers);
    }
done:
    PyMem_Free(pieces);
    PyMem_Free(flows);
    PyMem_Free(outs);
    PyMem_Free(table.slots);
    return frames;
}

/* -----------------------------------------------------------------------------------------
 * Inner packets by address: the twins of by_source and by_destination in node/wire.py.
 */

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
static PyObject *runs_by_address(PyObject *packets, int source, Py_ssize_t mtu,
                                 Py_ssize_t *malformed, Py_ssize_t *oversize)
{
    PyObject *runs = PyList_New(0), *run = NULL;
    const unsigned char *last = NULL;
    Py_ssize_t last_length = 0;
    if (runs == NULL)
        return NULL;
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
            unsigned long hint = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 1));
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
    return runs;
fail:
    Py_DECREF(runs);
    return NULL;
}

static PyObject *datapath_by_source(PyObject *module, PyObject *args)
{
    PyObject *packets;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &packets))
        return NULL;
    Py_ssize_t malformed = 0, oversize = 0;
    PyObject *runs = runs_by_address(packets, 1, 0, &malformed, &oversize);
    return runs ? Py_BuildValue("(Nn)", runs, malformed) : NULL;
}

static PyObject *datapath_by_destination(PyObject *module, PyObject *args)
{
    PyObject *packets;
    Py_ssize_t mtu;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &packets, &mtu))
        return NULL;
    Py_ssize_t malformed = 0, oversize = 0;
    PyObject *runs = runs_by_address(packets, 0, mtu, &malformed, &oversize);
    return runs ? Py_BuildValue("(Nnn)", runs, malformed, oversize) : NULL;
}

static PyMethodDef datapath_functions[] = {
    {"segment", datapath_segment, METH_VARARGS,
     "segment(packet, start, size, ecn) -> [(segment, hint)]: as offload._segment."},
    {"merge", datapath_merge, METH_VARARGS,
     "merge(packets) -> frames, each a list of one buffer: as offload.merge."},
    {"by_source", datapath_by_source, METH_VARARGS,
     "by_source(packets) -> (runs, malformed): as node/wire.py's python_by_source."},
    {"by_destination", datapath_by_destination, METH_VARARGS,
     "by_destination(packets, mtu) -> (runs, malformed, oversize): as node/wire.py's."},
    {NULL}
};

/* ----------------------------------------------------------------------------------------- */

static struct PyModuleDef datapath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "oneservice._datapath",
    .m_doc = "The data path's ChaCha20-Poly1305 in batches (see oneservice/node/aead.py).",
    .m_size = -1,
    .m_methods = datapath_functions,
};

PyMODINIT_FUNC PyInit__datapath(void)
{
    if (poly1305 == NULL && (poly1305 = EVP_MAC_fetch(NULL, "POLY1305", NULL)) == NULL) {
        /* native.load() takes this as "no extension" and the node runs the Python twin. */
        ERR_clear_error();
        PyErr_SetString(PyExc_ImportError, "OpenSSL offers no Poly1305");
        return NULL;
    }
    if (PyType_Ready(&SealerType) < 0 || PyType_Ready(&OpenerType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&datapath_module);
    if (module == NULL)
        return NULL;
    CryptoError = PyErr_NewException("oneservice._datapath.CryptoError", PyExc_RuntimeError, NULL);
    if (CryptoError == NULL
        || PyModule_AddObjectRef(module, "CryptoError", CryptoError) < 0
        || PyModule_AddObjectRef(module, "Sealer", (PyObject *)&SealerType) < 0
        || PyModule_AddObjectRef(module, "Opener", (PyObject *)&OpenerType) < 0
        || PyModule_AddStringConstant(module, "OPENSSL_VERSION", OpenSSL_version(OPENSSL_VERSION))
               < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
