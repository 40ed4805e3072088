"""Row-major GEMM over scipy's BLAS against its NumPy twin."""

import numpy as np
import pytest
from conftest import RTOL
from numpy.testing import assert_allclose

from fastbp import _blas, _reference

TRANS = [(False, False), (True, False), (False, True), (True, True)]
TRANS_IDS = ["NN", "TN", "NT", "TT"]
# (m, n, k): 1-row, 1-column, 1-deep and 0-deep products next to the seeds'
# random shapes.
FIXED_SHAPES = [(1, 4, 3), (5, 1, 3), (1, 1, 1), (4, 3, 1), (1, 6, 1), (4, 3, 0)]
# Explicit specializations: plain dispatch cannot reach the float32 one (see
# test_gemm_dispatch_float32).
GEMM = {np.float32: _blas.gemm, np.float64: _blas.gemm}
ALPHA_BETA = [(1.0, 0.0), (1.0, 1.0), (0.5, 0.3), (-2.0, 1.0), (0.0, 0.7)]


def _operands(rng, dtype, m, n, k, trans_a, trans_b):
    A = rng.randn(*((k, m) if trans_a else (m, k))).astype(dtype)
    B = rng.randn(*((n, k) if trans_b else (k, n))).astype(dtype)
    out = rng.randn(m, n).astype(dtype)
    return A, B, out


def _check_gemm(rng, dtype, shape, trans_a, trans_b, alpha, beta):
    A, B, out = _operands(rng, dtype, *shape, trans_a, trans_b)
    expected = out.copy()
    _reference.gemm(trans_a, trans_b, alpha, A, B, beta, expected)
    # Straight from the definition, so the twin is checked too.
    opA = A.T if trans_a else A
    opB = B.T if trans_b else B
    direct = alpha * (opA.astype(np.float64) @ opB) + beta * out.astype(np.float64)
    GEMM[dtype](trans_a, trans_b, alpha, A, B, beta, out)
    assert out.dtype == dtype
    assert_allclose(out, expected, rtol=RTOL[dtype], atol=10 * RTOL[dtype])
    assert_allclose(out, direct, rtol=RTOL[dtype], atol=10 * RTOL[dtype])


@pytest.mark.parametrize("alpha, beta", ALPHA_BETA)
@pytest.mark.parametrize("trans_a, trans_b", TRANS, ids=TRANS_IDS)
def test_gemm_random_shapes(dtype, seed, trans_a, trans_b, alpha, beta):
    rng = np.random.RandomState(seed)
    shape = tuple(rng.randint(2, 9, size=3))
    _check_gemm(rng, dtype, shape, trans_a, trans_b, alpha, beta)


@pytest.mark.parametrize("shape", FIXED_SHAPES, ids=str)
@pytest.mark.parametrize("trans_a, trans_b", TRANS, ids=TRANS_IDS)
def test_gemm_edge_shapes(dtype, shape, trans_a, trans_b):
    rng = np.random.RandomState(0)
    for alpha, beta in ALPHA_BETA:
        _check_gemm(rng, dtype, shape, trans_a, trans_b, alpha, beta)


@pytest.mark.parametrize("shape", [(0, 3, 2), (3, 0, 2)], ids=str)
@pytest.mark.parametrize("trans_a, trans_b", TRANS, ids=TRANS_IDS)
def test_gemm_empty_output(dtype, shape, trans_a, trans_b):
    rng = np.random.RandomState(0)
    _check_gemm(rng, dtype, shape, trans_a, trans_b, 0.5, 0.3)


@pytest.mark.parametrize("trans_a, trans_b", TRANS, ids=TRANS_IDS)
def test_gemm_hand_values(dtype, trans_a, trans_b):
    # [[1, 2], [3, 4]] @ [[5, 6], [7, 8]] = [[19, 22], [43, 50]]
    A = np.array([[1, 2], [3, 4]], dtype=dtype)
    B = np.array([[5, 6], [7, 8]], dtype=dtype)
    A = np.ascontiguousarray(A.T) if trans_a else A
    B = np.ascontiguousarray(B.T) if trans_b else B
    out = np.ones((2, 2), dtype=dtype)
    # 2 * product - 1 * ones
    GEMM[dtype](trans_a, trans_b, 2.0, A, B, -1.0, out)
    assert_allclose(out, [[37, 43], [85, 99]], rtol=RTOL[dtype])


def test_gemm_rectangular_transposes(dtype):
    # op(A) (1, 3) @ op(B) (3, 2) with both stored transposed: (3, 1) and (2, 3).
    A = np.array([[1], [2], [3]], dtype=dtype)
    B = np.array([[1, 0, -1], [2, 2, 2]], dtype=dtype)
    out = np.zeros((1, 2), dtype=dtype)
    GEMM[dtype](True, True, 1.0, A, B, 0.0, out)
    assert_allclose(out, [[1 - 3, 2 + 4 + 6]], rtol=RTOL[dtype])


@pytest.mark.parametrize("trans_a, trans_b", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize(
    "bad, match",
    [
        ("a_rows", "op\\(A\\) rows must match out rows"),
        ("inner", "op\\(A\\) columns must match op\\(B\\) rows"),
        ("b_cols", "op\\(B\\) columns must match out columns"),
    ],
)
def test_gemm_shape_mismatch(dtype, trans_a, trans_b, bad, match):
    m, n, k = 3, 4, 5
    A_shape = [k, m] if trans_a else [m, k]
    B_shape = [n, k] if trans_b else [k, n]
    out_shape = [m, n]
    if bad == "a_rows":
        out_shape[0] += 1
    elif bad == "inner":
        B_shape[1 if trans_b else 0] += 1
    else:
        B_shape[0 if trans_b else 1] += 1
    A = np.zeros(A_shape, dtype=dtype)
    B = np.zeros(B_shape, dtype=dtype)
    out = np.zeros(out_shape, dtype=dtype)
    with pytest.raises(ValueError, match=match):
        GEMM[dtype](trans_a, trans_b, 1.0, A, B, 0.0, out)


def test_gemm_dispatch_float64():
    A = np.ones((2, 3))
    B = np.ones((3, 2))
    out = np.ones((2, 2))
    _blas.gemm(False, False, 0.5, A, B, 2.0, out)
    assert_allclose(out, np.full((2, 2), 3.5), rtol=RTOL[np.float64])


@pytest.mark.parametrize("scalar", [float, np.float32], ids=["float", "np.float32"])
def test_gemm_dispatch_float32(scalar):
    A = np.ones((2, 3), dtype=np.float32)
    B = np.ones((3, 2), dtype=np.float32)
    out = np.ones((2, 2), dtype=np.float32)
    _blas.gemm(False, False, scalar(0.5), A, B, scalar(2.0), out)
    assert_allclose(out, np.full((2, 2), 3.5), rtol=RTOL[np.float32])
