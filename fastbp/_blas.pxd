# Row-major BLAS over scipy's cython_blas, for float32 and float64.
# cython_blas is column-major; a row-major C = op(A) @ op(B) is the
# column-major C^T = op(B)^T @ op(A)^T, so operands swap here, once.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


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
