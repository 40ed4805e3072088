"""The fitted state's snapshot (``fastbp._fitted_state``), compiled: every
predict, transform and score takes one and compares it with the last
checked one. In Python the two cost a one-row predict 1.5 us."""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject


def snapshot(dict d, tuple watched, Py_ssize_t n_containers):
    """The watched attributes' values, then the contents of the lists and
    the optimizer dict among them (with each list's length), as one list to
    compare by identity (None: never the same). watched starts with
    coefs_, intercepts_, activation and _optimizer; its first n_containers
    may be lists or dicts. An array reshaped in place (``a.shape = ...``)
    goes unseen."""
    cdef list snap = []
    cdef PyObject* v
    cdef Py_ssize_t i
    for name in watched:
        v = PyDict_GetItem(d, name)
        snap.append(<object> v if v is not NULL else None)
    coefs, intercepts, activation, optimizer = snap[0], snap[1], snap[2], snap[3]
    if type(coefs) is not list or type(intercepts) is not list:
        return None  # the full check reports it
    snap.append(len(coefs))
    snap.extend(<list> coefs)
    snap.append(len(intercepts))
    snap.extend(<list> intercepts)
    if type(optimizer) is dict:
        snap.extend((<dict> optimizer).values())
    if type(activation) is list:
        snap.extend(<list> activation)
    if snap[4] is not None:  # batch norm
        for i in range(4, n_containers):
            v2 = snap[i]
            if type(v2) is list:
                snap.append(len(v2))
                snap.extend(<list> v2)
    return snap


def same(list a, list b):
    """a and b hold the same objects (by identity), in the same order."""
    cdef Py_ssize_t i, n
    if a is None or b is None:
        return False
    n = len(a)
    if len(b) != n:
        return False
    for i in range(n):
        if <PyObject*> a[i] is not <PyObject*> b[i]:
            return False
    return True
