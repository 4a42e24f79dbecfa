/* The module oneservice._datapath: its types (sealer.c, opener.c), functions (segment.c,
 * merge.c, runs.c) and CryptoError. See datapath.h for the files and their jobs. */
#include "datapath.h"

#include <openssl/crypto.h>

PyObject *dp_crypto_error;

static PyMethodDef datapath_functions[] = {
    {"segment", dp_segment, METH_VARARGS,
     "segment(packet, start, size, ecn) -> [(segment, hint)]: as offload._segment."},
    {"merge", dp_merge, METH_VARARGS,
     "merge(packets) -> frames, each a list of one buffer: as offload.merge."},
    {"write_merged", dp_write_merged, METH_VARARGS,
     "write_merged(fd, packets) -> (frames, failed): as offload.python_write_merged."},
    {"by_source", dp_by_source, METH_VARARGS,
     "by_source(packets) -> (runs, malformed): as node/wire.py's python_by_source."},
    {"by_destination", dp_by_destination, METH_VARARGS,
     "by_destination(packets, mtu) -> (runs, malformed, oversize): as node/wire.py's."},
    {NULL}
};

static struct PyModuleDef datapath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "oneservice._datapath",
    .m_doc = "The data path's ChaCha20-Poly1305 in batches (see oneservice/node/aead.py).",
    .m_size = -1,
    .m_methods = datapath_functions,
};

PyMODINIT_FUNC PyInit__datapath(void)
{
    if (dp_aead_load() < 0)
        return NULL;
    if (PyType_Ready(&dp_sealer_type) < 0 || PyType_Ready(&dp_opener_type) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&datapath_module);
    if (module == NULL)
        return NULL;
    if (dp_crypto_error == NULL)
        dp_crypto_error = PyErr_NewException("oneservice._datapath.CryptoError",
                                             PyExc_RuntimeError, NULL);
    if (dp_crypto_error == NULL
        || PyModule_AddObjectRef(module, "CryptoError", dp_crypto_error) < 0
        || PyModule_AddObjectRef(module, "Sealer", (PyObject *)&dp_sealer_type) < 0
        || PyModule_AddObjectRef(module, "Opener", (PyObject *)&dp_opener_type) < 0
        || PyModule_AddStringConstant(module, "OPENSSL_VERSION", OpenSSL_version(OPENSSL_VERSION))
               < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
