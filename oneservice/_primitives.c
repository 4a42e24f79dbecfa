/*
 * oneservice._primitives: X25519, Ed25519 and ChaCha20-Poly1305 with the caller's nonce, for
 * identities and handshakes, over the system's libcrypto (EVP).
 *
 * The twin is oneservice/primitives.py's pure-Python path over `cryptography`; both give the
 * same bytes (X25519 and Ed25519 signatures are deterministic; tests/unit/test_primitives.py
 * compares them). What this adds is memory: the interpreter has the system's libcrypto
 * mapped already (ssl, hashlib), while `cryptography` brings an OpenSSL of its own, about
 * 9 MiB resident in a running node.
 *
 * A private key is an object (X25519Key, Ed25519Key) made once: OpenSSL computes its public
 * key when it is made, and every exchange or signature after costs one operation. The
 * functions (verification, the AEAD) make and free their own EVP objects. On any failure the
 * OpenSSL error queue is cleared, so that nothing is left there for the ssl module to
 * misreport later.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#define KEY_LEN 32
#define SIGNATURE_LEN 64
#define NONCE_LEN 12
#define TAG_LEN 16

/* Parse one argument as exactly `length` bytes (a bytes-like object). */
static int exact(PyObject *object, Py_buffer *view, Py_ssize_t length, const char *what)
{
    if (PyObject_GetBuffer(object, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len != length) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s is %zd bytes", what, length);
        return -1;
    }
    return 0;
}

static PyObject *failed(const char *message)
{
    ERR_clear_error();
    PyErr_SetString(PyExc_ValueError, message);
    return NULL;
}

/* A private key, made once (OpenSSL derives its public key then: one scalar multiplication)
 * and used for every exchange or signature after. X25519Key and Ed25519Key share it. */
typedef struct {
    PyObject_HEAD
    EVP_PKEY *key;
    PyObject *public;  /* bytes */
} Key;

static int key_init(Key *self, PyObject *args, int type)
{
    PyObject *private_object;
    Py_buffer private;
    if (!PyArg_ParseTuple(args, "O", &private_object)
        || exact(private_object, &private, KEY_LEN, "a private key") < 0)
        return -1;
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(type, NULL, private.buf, KEY_LEN);
    PyBuffer_Release(&private);
    unsigned char public[KEY_LEN];
    size_t length = KEY_LEN;
    if (key == NULL || EVP_PKEY_get_raw_public_key(key, public, &length) != 1
        || length != KEY_LEN) {
        EVP_PKEY_free(key);
        failed("the public key could not be computed");
        return -1;
    }
    PyObject *public_bytes = PyBytes_FromStringAndSize((const char *)public, KEY_LEN);
    if (public_bytes == NULL) {
        EVP_PKEY_free(key);
        return -1;
    }
    EVP_PKEY_free(self->key);
    self->key = key;
    Py_XSETREF(self->public, public_bytes);
    return 0;
}

static int x25519_init(Key *self, PyObject *args, PyObject *kwargs)
{
    return key_init(self, args, EVP_PKEY_X25519);
}

static int ed25519_init(Key *self, PyObject *args, PyObject *kwargs)
{
    return key_init(self, args, EVP_PKEY_ED25519);
}

static void key_dealloc(Key *self)
{
    EVP_PKEY_free(self->key);  /* (OpenSSL clears the private key as it frees it) */
    Py_XDECREF(self->public);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int key_ready(const Key *self)
{
    if (self->key != NULL)
        return 0;
    PyErr_SetString(PyExc_ValueError, "the key was not initialised");
    return -1;
}

/* X25519Key.exchange(public) -> the shared secret; ValueError when it is all zeros (a public
 * key of small order), as OpenSSL refuses it. */
static PyObject *x25519_exchange(Key *self, PyObject *public_object)
{
    Py_buffer public;
    if (key_ready(self) < 0 || exact(public_object, &public, KEY_LEN, "a public key") < 0)
        return NULL;
    EVP_PKEY *theirs = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, public.buf, KEY_LEN);
    PyBuffer_Release(&public);
    EVP_PKEY_CTX *ctx = theirs ? EVP_PKEY_CTX_new(self->key, NULL) : NULL;
    unsigned char shared[KEY_LEN];
    size_t length = KEY_LEN;
    int ok = ctx != NULL && EVP_PKEY_derive_init(ctx) == 1
             && EVP_PKEY_derive_set_peer(ctx, theirs) == 1
             && EVP_PKEY_derive(ctx, shared, &length) == 1 && length == KEY_LEN;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(theirs);
    if (!ok)
        return failed("no shared key with this public key");
    return PyBytes_FromStringAndSize((const char *)shared, KEY_LEN);
}

/* Ed25519Key.sign(message) -> the 64-byte signature (RFC 8032, deterministic). */
static PyObject *ed25519_sign(Key *self, PyObject *message_object)
{
    Py_buffer message;
    if (key_ready(self) < 0 || PyObject_GetBuffer(message_object, &message, PyBUF_SIMPLE) < 0)
        return NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char signature[SIGNATURE_LEN];
    size_t length = SIGNATURE_LEN;
    int ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, self->key) == 1
             && EVP_DigestSign(ctx, signature, &length, message.buf, (size_t)message.len) == 1
             && length == SIGNATURE_LEN;
    EVP_MD_CTX_free(ctx);
    PyBuffer_Release(&message);
    if (!ok)
        return failed("the message could not be signed");
    return PyBytes_FromStringAndSize((const char *)signature, SIGNATURE_LEN);
}

static PyMemberDef key_members[] = {
    {"public", T_OBJECT, offsetof(Key, public), READONLY, "the public key (32 bytes)"},
    {NULL}
};

static PyMethodDef x25519_methods[] = {
    {"exchange", (PyCFunction)x25519_exchange, METH_O,
     "exchange(public) -> shared secret; ValueError if it is all zeros"},
    {NULL}
};

static PyMethodDef ed25519_methods[] = {
    {"sign", (PyCFunction)ed25519_sign, METH_O, "sign(message) -> signature"},
    {NULL}
};

static PyTypeObject X25519KeyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "oneservice._primitives.X25519Key",
    .tp_doc = "X25519Key(private): an X25519 private key, its public key, its exchanges.",
    .tp_basicsize = sizeof(Key),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)x25519_init,
    .tp_dealloc = (destructor)key_dealloc,
    .tp_methods = x25519_methods,
    .tp_members = key_members,
};

static PyTypeObject Ed25519KeyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "oneservice._primitives.Ed25519Key",
    .tp_doc = "Ed25519Key(private): an Ed25519 private key, its public key, its signatures.",
    .tp_basicsize = sizeof(Key),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ed25519_init,
    .tp_dealloc = (destructor)key_dealloc,
    .tp_methods = ed25519_methods,
    .tp_members = key_members,
};

/* ed25519_verify(public, signature, message) -> bool: False for anything but a valid
 * signature (a malformed key or signature included). */
static PyObject *ed25519_verify(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    Py_buffer public, signature, message;
    if (count != 3) {
        PyErr_SetString(PyExc_TypeError, "ed25519_verify(public, signature, message)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &public, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &signature, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&public);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &message, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&public);
        PyBuffer_Release(&signature);
        return NULL;
    }
    int valid = 0;
    if (public.len == KEY_LEN && signature.len == SIGNATURE_LEN) {
        EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public.buf, KEY_LEN);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        valid = key != NULL && ctx != NULL
                && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1
                && EVP_DigestVerify(ctx, signature.buf, SIGNATURE_LEN, message.buf,
                                    (size_t)message.len) == 1;
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(key);
    }
    PyBuffer_Release(&public);
    PyBuffer_Release(&signature);
    PyBuffer_Release(&message);
    ERR_clear_error();
    return PyBool_FromLong(valid);
}

/* One AEAD operation: ChaCha20-Poly1305 (RFC 8439), key and 12-byte nonce given, the tag
 * after the ciphertext. Sealing returns bytes; opening returns None when it does not
 * authenticate. */
static PyObject *aead(PyObject *const *args, Py_ssize_t count, int encrypt)
{
    Py_buffer key, nonce, input, ad;
    if (count != 4) {
        PyErr_SetString(PyExc_TypeError, encrypt ? "aead_seal(key, nonce, plaintext, ad)"
                                                 : "aead_open(key, nonce, ciphertext, ad)");
        return NULL;
    }
    if (exact(args[0], &key, KEY_LEN, "a ChaCha20-Poly1305 key") < 0)
        return NULL;
    if (exact(args[1], &nonce, NONCE_LEN, "a ChaCha20-Poly1305 nonce") < 0) {
        PyBuffer_Release(&key);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &input, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&key);
        PyBuffer_Release(&nonce);
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &ad, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&key);
        PyBuffer_Release(&nonce);
        PyBuffer_Release(&input);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t body = encrypt ? input.len : input.len - TAG_LEN;
    if (body < 0 || input.len > INT_MAX - TAG_LEN || ad.len > INT_MAX) {
        if (encrypt)
            PyErr_SetString(PyExc_ValueError, "too long for one AEAD call");
        else
            result = Py_NewRef(Py_None);  /* shorter than a tag: cannot authenticate */
        goto release;
    }
    result = PyBytes_FromStringAndSize(NULL, encrypt ? body + TAG_LEN : body);
    if (result == NULL)
        goto release;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *in = input.buf;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int written = 0, last = 0;
    int ok = ctx != NULL
             && EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL, encrypt)
             && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, NONCE_LEN, NULL)
             && EVP_CipherInit_ex(ctx, NULL, NULL, key.buf, nonce.buf, encrypt)
             && (encrypt || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN,
                                                (void *)(in + body)))
             && EVP_CipherUpdate(ctx, NULL, &written, ad.buf, (int)ad.len)
             && EVP_CipherUpdate(ctx, out, &written, in, (int)body)
             && EVP_CipherFinal_ex(ctx, out + written, &last) > 0
             && (!encrypt || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN,
                                                 out + body));
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        Py_DECREF(result);
        if (encrypt) {
            PyErr_SetString(PyExc_ValueError, "ChaCha20-Poly1305 failed");
            result = NULL;
        } else {
            result = Py_NewRef(Py_None);
        }
    }
release:
    PyBuffer_Release(&key);
    PyBuffer_Release(&nonce);
    PyBuffer_Release(&input);
    PyBuffer_Release(&ad);
    return result;
}

static PyObject *aead_seal(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    return aead(args, count, 1);
}

static PyObject *aead_open(PyObject *module, PyObject *const *args, Py_ssize_t count)
{
    return aead(args, count, 0);
}

static PyMethodDef primitives_functions[] = {
    {"ed25519_verify", (PyCFunction)(void (*)(void))ed25519_verify, METH_FASTCALL,
     "ed25519_verify(public, signature, message) -> bool"},
    {"aead_seal", (PyCFunction)(void (*)(void))aead_seal, METH_FASTCALL,
     "aead_seal(key, nonce, plaintext, ad) -> ciphertext and tag"},
    {"aead_open", (PyCFunction)(void (*)(void))aead_open, METH_FASTCALL,
     "aead_open(key, nonce, ciphertext, ad) -> plaintext, or None if it does not authenticate"},
    {NULL}
};

static struct PyModuleDef primitives_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "oneservice._primitives",
    .m_doc = "X25519, Ed25519 and ChaCha20-Poly1305 over libcrypto (see oneservice/primitives.py).",
    .m_size = -1,
    .m_methods = primitives_functions,
};

PyMODINIT_FUNC PyInit__primitives(void)
{
    if (PyType_Ready(&X25519KeyType) < 0 || PyType_Ready(&Ed25519KeyType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&primitives_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "X25519Key", (PyObject *)&X25519KeyType) < 0
        || PyModule_AddObjectRef(module, "Ed25519Key", (PyObject *)&Ed25519KeyType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
