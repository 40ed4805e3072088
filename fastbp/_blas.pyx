"""Python access to the row-major GEMM wrapper, for tests."""
from cython cimport floating


def gemm(bint trans_a, bint trans_b, double alpha,
         const floating[:, ::1] A, const floating[:, ::1] B,
         double beta, floating[:, ::1] out):
    """out = alpha * op(A) @ op(B) + beta * out. Twin: _reference.gemm."""
    cdef int m = out.shape[0], n = out.shape[1]
    cdef int k = A.shape[0] if trans_a else A.shape[1]
    if (A.shape[1] if trans_a else A.shape[0]) != m:
        raise ValueError("op(A) rows must match out rows")
    if (B.shape[1] if trans_b else B.shape[0]) != k:
        raise ValueError("op(A) columns must match op(B) rows")
    if (B.shape[0] if trans_b else B.shape[1]) != n:
        raise ValueError("op(B) columns must match out columns")
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m):
            for j in range(n):
                out[i, j] = beta * out[i, j]
        return
    with nogil:
        _gemm(trans_a, trans_b, m, n, k, <floating> alpha, &A[0, 0],
              A.shape[1], &B[0, 0], B.shape[1], <floating> beta, &out[0, 0], n)
