/* The module oneservice._allocator: glibc's mallopt and malloc_trim for memory.py, without
 * loading ctypes for two calls (0.4 MiB of an idle node). Built where glibc's <malloc.h>
 * has them; elsewhere the build leaves it out and memory.py does without. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <malloc.h>

static PyObject *allocator_mallopt(PyObject *self, PyObject *args)
{
    int parameter, value;
    if (!PyArg_ParseTuple(args, "ii", &parameter, &value))
        return NULL;
    return PyLong_FromLong(mallopt(parameter, value));
}

static PyObject *allocator_malloc_trim(PyObject *self, PyObject *args)
{
    Py_ssize_t pad;
    if (!PyArg_ParseTuple(args, "n", &pad))
        return NULL;
    if (pad < 0) {
        PyErr_SetString(PyExc_ValueError, "malloc_trim: pad must not be negative");
        return NULL;
    }
    int released;
    Py_BEGIN_ALLOW_THREADS
    released = malloc_trim((size_t)pad);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(released);
}

static PyMethodDef allocator_functions[] = {
    {"mallopt", allocator_mallopt, METH_VARARGS,
     "mallopt(parameter, value) -> 1 if glibc took the setting, else 0."},
    {"malloc_trim", allocator_malloc_trim, METH_VARARGS,
     "malloc_trim(pad) -> 1 if memory was given back to the system, else 0."},
    {NULL}
};

static struct PyModuleDef allocator_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "oneservice._allocator",
    .m_doc = "glibc's allocator settings (see oneservice/memory.py).",
    .m_size = -1,
    .m_methods = allocator_functions,
};

PyMODINIT_FUNC PyInit__allocator(void)
{
    return PyModule_Create(&allocator_module);
}
