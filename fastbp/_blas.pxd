# Row-major BLAS over scipy's cython_blas, for float32 and float64.
# cython_blas is column-major; a row-major C = op(A) @ op(B) is the
# column-major C^T = op(B)^T @ op(A)^T, so operands swap here, once.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv


cdef inline void _gemm(
    bint trans_a, bint trans_b, int m, int n, int k,
    floating alpha, const floating* A, int lda,
    const floating* B, int ldb,
    floating beta, floating* C, int ldc,
) noexcept nogil:
    """C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, row-major.

    lda, ldb, ldc are the row strides (columns of the stored matrices).
    """
    cdef char ta = b"T" if trans_a else b"N"
    cdef char tb = b"T" if trans_b else b"N"
    if m == 0 or n == 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> B, &ldb,
              <float*> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> B, &ldb,
              <double*> A, &lda, &beta, C, &ldc)


cdef inline void _row_gemv(int n, int k, const floating* a, const floating* B,
                           int ldb, floating* c) noexcept nogil:
    """c (n) = a (k) @ B (k, n), B row-major with row stride ldb: one row's
    product, which OpenBLAS's gemm takes 3-5x longer over than its gemv
    (scipy's OpenBLAS 0.3.30, Haswell; NumPy's matmul calls gemv too)."""
    cdef char t = b"N"
    cdef int one = 1
    cdef floating alpha = 1, beta = 0
    if n == 0:
        return
    # Column-major, B is the (n, k) matrix B^T: c = B^T a.
    if floating is float:
        sgemv(&t, &n, &k, &alpha, <float*> B, &ldb, <float*> a, &one,
              &beta, c, &one)
    else:
        dgemv(&t, &n, &k, &alpha, <double*> B, &ldb, <double*> a, &one,
              &beta, c, &one)
