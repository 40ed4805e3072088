"""Input conversion shared by fitting, predicting and the second-order tools."""

from numbers import Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array

import fastbp._epoch as _epoch


def as_kernel_input(X, dtype):
    """The (dense, csr) pair the engine takes.

    For sparse X, dense is an empty (0, n_features) array: it carries the
    dtype the compiled functions dispatch on.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=dtype)  # validate_data checked finiteness
        csr = (
            np.ascontiguousarray(X.data, dtype=dtype),
            np.ascontiguousarray(X.indices, dtype=np.intp),
            np.ascontiguousarray(X.indptr, dtype=np.intp),
        )
        return np.empty((0, X.shape[1]), dtype=dtype), csr
    return np.ascontiguousarray(X, dtype=dtype), None


def all_finite_float(X):
    """True when X, a float32 or float64 ndarray, holds no NaN or infinity.

    A C-contiguous X takes one compiled pass that stops at the first bad
    value (no temporaries; numpy's isfinite(X).all() or X.sum() cost a
    single-row predict more than its forward pass). Any other layout: its
    sum, which an overflow also makes non-finite (False: the caller then
    validates in full, as for a bad value)."""
    if X.flags.c_contiguous:
        return _epoch.all_finite(X.reshape(-1))
    return bool(np.isfinite(X.sum()))


def check_sample_weight(sample_weight, n_samples, dtype):
    """sample_weight as a contiguous (n_samples,) array of dtype, or None."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, Real):
        sample_weight = np.full(n_samples, sample_weight, dtype=dtype)
    sample_weight = check_array(
        sample_weight, ensure_2d=False, dtype=dtype, input_name="sample_weight"
    )
    if sample_weight.ndim != 1:
        raise ValueError(
            "Sample weights must be 1D array or scalar, got "
            f"{sample_weight.ndim}D array. Expected either a scalar value "
            f"or a 1D array of length {n_samples}."
        )
    if sample_weight.shape != (n_samples,):
        raise ValueError(
            f"sample_weight.shape == {sample_weight.shape}, "
            f"expected {(n_samples,)}!"
        )
    if np.any(sample_weight < 0):
        raise ValueError("Negative values in data passed to `sample_weight`.")
    if not np.any(sample_weight > 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return np.ascontiguousarray(sample_weight)
