/*
 * oneservice._datapath: the data path's ChaCha20-Poly1305 in batches, over OpenSSL's EVP.
 *
 * The pure-Python twin is oneservice/node/aead.py; both produce the same bytes (a property
 * test feeds random batches through both) and have the same interface, described there.
 * What this adds is speed: one EVP context per direction, kept for the session's life (only
 * the nonce changes per packet), and one call per batch instead of several per packet.
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
#include <openssl/evp.h>

#define HEADER_LEN 16
#define TAG_LEN 16
#define KEY_LEN 32
#define NONCE_LEN 12
#define PROTOCOL_VERSION 1
#define TYPE_DATA 3
/* As node/session.py: 2048 counters, the same window as WireGuard. */
#define WINDOW_BITS 2048
#define WINDOW_WORDS (WINDOW_BITS / 64)
#define MAX_PAYLOAD (65535 - HEADER_LEN - TAG_LEN)

static PyObject *CryptoError;

static EVP_CIPHER_CTX *new_context(const unsigned char *key, int encrypt)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return NULL;
    if (!EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL, encrypt)
        || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, NONCE_LEN, NULL)
        || !EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, encrypt)) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

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

/* ----------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *ctx;
} Sealer;

static int Sealer_init(Sealer *self, PyObject *args, PyObject *kwargs)
{
    Py_buffer key;
    if (key_from(args, &key) < 0)
        return -1;
    if (self->ctx != NULL)
        EVP_CIPHER_CTX_free(self->ctx);
    self->ctx = new_context(key.buf, 1);
    PyBuffer_Release(&key);
    if (self->ctx == NULL) {
        PyErr_SetString(CryptoError, "OpenSSL refused the ChaCha20-Poly1305 key");
        return -1;
    }
    return 0;
}

static void Sealer_dealloc(Sealer *self)
{
    if (self->ctx != NULL)
        EVP_CIPHER_CTX_free(self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* header (16 bytes, already written at out) + payload -> out: header, ciphertext, tag. */
static int seal_into(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *payload,
                     Py_ssize_t length)
{
    unsigned char nonce[NONCE_LEN] = {0};
    int written;
    memcpy(nonce + 4, out + 8, 8);
    if (!EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 1)
        || !EVP_EncryptUpdate(ctx, NULL, &written, out, HEADER_LEN)
        || !EVP_EncryptUpdate(ctx, out + HEADER_LEN, &written, payload, (int)length)
        || !EVP_EncryptFinal_ex(ctx, out + HEADER_LEN + length, &written)
        || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN,
                                out + HEADER_LEN + length))
        return -1;
    return 0;
}

static PyObject *sealed(EVP_CIPHER_CTX *ctx, const unsigned char *header, const Py_buffer *payload)
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
    if (seal_into(ctx, out, payload->buf, payload->len) < 0) {
        Py_DECREF(datagram);
        PyErr_SetString(CryptoError, "OpenSSL failed to seal");
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
        result = sealed(self->ctx, header.buf, &payload);
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
    header[0] = PROTOCOL_VERSION;
    header[1] = (unsigned char)kind;
    put_le32(header + 4, (uint32_t)remote_index);
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
        put_le16(header + 2, (unsigned)hint);
        put_le64(header + 8, (uint64_t)(counter + (unsigned long long)i));
        PyObject *datagram = sealed(self->ctx, header, &payload);
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

static PyMethodDef Sealer_methods[] = {
    {"seal", (PyCFunction)Sealer_seal, METH_VARARGS,
     "seal(header, payload) -> datagram: the 16-byte header, then the payload sealed."},
    {"seal_many", (PyCFunction)Sealer_seal_many, METH_VARARGS,
     "seal_many(kind, remote_index, counter, packets) -> datagrams, one per (payload, hint),"
     " with counters from counter on."},
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
    EVP_CIPHER_CTX *ctx;
    uint32_t local_index;
    int seen_any;          /* highest is meaningful */
    uint64_t highest;
    uint64_t bitmap[WINDOW_WORDS]; /* bit i (word i / 64, bit i % 64): counter highest - i seen */
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
    if (self->ctx != NULL)
        EVP_CIPHER_CTX_free(self->ctx);
    self->ctx = new_context(key.buf, 0);
    PyBuffer_Release(&key);
    if (self->ctx == NULL) {
        PyErr_SetString(CryptoError, "OpenSSL refused the ChaCha20-Poly1305 key");
        return -1;
    }
    self->local_index = (uint32_t)local_index;
    self->seen_any = 0;
    self->highest = 0;
    memset(self->bitmap, 0, sizeof(self->bitmap));
    return 0;
}

static void Opener_dealloc(Opener *self)
{
    if (self->ctx != NULL)
        EVP_CIPHER_CTX_free(self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int window_seen_or_too_old(const Opener *self, uint64_t counter)
{
    if (!self->seen_any || counter > self->highest)
        return 0;
    uint64_t offset = self->highest - counter;
    if (offset >= WINDOW_BITS)
        return 1;
    return (self->bitmap[offset / 64] >> (offset % 64)) & 1;
}

static void window_shift(Opener *self, uint64_t shift)
{
    if (shift >= WINDOW_BITS) {
        memset(self->bitmap, 0, sizeof(self->bitmap));
        return;
    }
    unsigned words = (unsigned)(shift / 64), bits = (unsigned)(shift % 64);
    for (int i = WINDOW_WORDS - 1; i >= 0; i--) {
        uint64_t value = 0;
        int from = i - (int)words;
        if (from >= 0) {
            value = self->bitmap[from] << bits;
            if (bits && from > 0)
                value |= self->bitmap[from - 1] >> (64 - bits);
        }
        self->bitmap[i] = value;
    }
}

/* Record an authenticated counter; 0 if it was a replay after all. */
static int window_mark(Opener *self, uint64_t counter)
{
    if (!self->seen_any || counter > self->highest) {
        /* With nothing seen the bitmap is empty: no shift needed. */
        if (self->seen_any)
            window_shift(self, counter - self->highest);
        self->bitmap[0] |= 1;
        self->highest = counter;
        self->seen_any = 1;
        return 1;
    }
    uint64_t offset = self->highest - counter;
    if (offset >= WINDOW_BITS || (self->bitmap[offset / 64] >> (offset % 64)) & 1)
        return 0;
    self->bitmap[offset / 64] |= (uint64_t)1 << (offset % 64);
    return 1;
}

/* Authenticate and decrypt data[16:] with the header as associated data into out. */
static int open_into(EVP_CIPHER_CTX *ctx, const unsigned char *data, Py_ssize_t length,
                     unsigned char *out)
{
    unsigned char nonce[NONCE_LEN] = {0};
    int written;
    Py_ssize_t body = length - HEADER_LEN - TAG_LEN;
    memcpy(nonce + 4, data + 8, 8);
    if (!EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 0)
        || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN,
                                (void *)(data + HEADER_LEN + body))
        || !EVP_DecryptUpdate(ctx, NULL, &written, data, HEADER_LEN)
        || !EVP_DecryptUpdate(ctx, out, &written, data + HEADER_LEN, (int)body)
        || EVP_DecryptFinal_ex(ctx, out + written, &written) <= 0)
        return -1;
    return 0;
}

/* The plaintext, or NULL without an exception set when the datagram is forged. */
static PyObject *opened(Opener *self, const unsigned char *data, Py_ssize_t length)
{
    PyObject *plaintext = PyBytes_FromStringAndSize(NULL, length - HEADER_LEN - TAG_LEN);
    if (plaintext == NULL)
        return NULL;
    if (open_into(self->ctx, data, length, (unsigned char *)PyBytes_AS_STRING(plaintext)) < 0) {
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

/* open_many(datagrams) -> (opened, authenticated, others, replayed, forged) */
static PyObject *Opener_open_many(Opener *self, PyObject *args)
{
    PyObject *datagrams;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &datagrams))
        return NULL;
    PyObject *opened_list = PyList_New(0), *others = PyList_New(0);
    Py_ssize_t authenticated = 0, replayed = 0, forged = 0;
    if (opened_list == NULL || others == NULL)
        goto fail;
    Py_ssize_t count = PyList_GET_SIZE(datagrams);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(datagrams, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "datagrams are bytes");
            goto fail;
        }
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(item);
        Py_ssize_t length = PyBytes_GET_SIZE(item);
        if (length < HEADER_LEN + TAG_LEN || length > 65535 || data[0] != PROTOCOL_VERSION
            || data[1] != TYPE_DATA || get_le32(data + 4) != self->local_index) {
            if (PyList_Append(others, item) < 0)
                goto fail;
            continue;
        }
        uint64_t counter = get_le64(data + 8);
        if (window_seen_or_too_old(self, counter)) {
            replayed++;
            continue;
        }
        PyObject *plaintext = opened(self, data, length);
        if (plaintext == NULL) {
            if (PyErr_Occurred())
                goto fail;
            forged++;
            continue;
        }
        if (!window_mark(self, counter)) {
            Py_DECREF(plaintext);
            replayed++;
            continue;
        }
        authenticated++;
        if (PyBytes_GET_SIZE(plaintext) == 0) {  /* a keepalive: nothing to deliver */
            Py_DECREF(plaintext);
            continue;
        }
        PyObject *pair = Py_BuildValue("(Ni)", plaintext, data[2] | data[3] << 8);
        if (pair == NULL)
            goto fail;
        int failed = PyList_Append(opened_list, pair);
        Py_DECREF(pair);
        if (failed < 0)
            goto fail;
    }
    return Py_BuildValue("(NnNnn)", opened_list, authenticated, others, replayed, forged);
fail:
    Py_XDECREF(opened_list);
    Py_XDECREF(others);
    return NULL;
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

/* ----------------------------------------------------------------------------------------- */

static struct PyModuleDef datapath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "oneservice._datapath",
    .m_doc = "The data path's ChaCha20-Poly1305 in batches (see oneservice/node/aead.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__datapath(void)
{
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
