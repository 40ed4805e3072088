"""Network layout: the flat parameter buffer, its views, init, workspace.

The flat buffer holds every coefficient matrix (row-major, layer by layer)
followed by every intercept vector, the order of scikit-learn's ``_pack``.
``coefs_[i]`` and ``intercepts_[i]`` are views into it, so optimizers, norm
clipping, L-BFGS and best-weight snapshots all work on one array.
"""

from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np

from fastbp._kernels import ACTIVATIONS, LOSSES


@dataclass(frozen=True)
class Plan:
    """Where everything lives, for the compiled epoch and its NumPy twin.

    Attributes
    ----------
    units : ndarray of shape (n_layers + 1,), intp
        Width of every layer, input first.
    coef_off, bias_off : ndarray of shape (n_layers,), intp
        Offsets of each layer's coefficients (fan_in, fan_out) and intercepts
        in the flat parameter buffer.
    n_params : int
        Length of the flat parameter buffer.
    act_off, delta_off : ndarray of shape (n_layers,), intp
        Offsets in the workspace of each layer's activations and deltas,
        (max_rows, units[l + 1]) row-major.
    gather_off : int
        Offset of the (max_rows, units[0]) buffer that shuffled dense batches
        are gathered into; -1 when there is none.
    max_rows : int
        Most rows one pass handles (the batch size).
    work_size : int
        Length of the workspace.
    hidden_act, out_act, loss : int
        Codes of the hidden activation, output activation and loss.
    """

    units: np.ndarray
    coef_off: np.ndarray
    bias_off: np.ndarray
    n_params: int
    act_off: np.ndarray
    delta_off: np.ndarray
    gather_off: int
    max_rows: int
    work_size: int
    hidden_act: int
    out_act: int
    loss: int


def param_offsets(units):
    """Offsets of coefficients and intercepts in the flat buffer, and its length."""
    units = list(units)
    sizes = [a * b for a, b in pairwise(units)] + units[1:]
    ends = np.cumsum([0] + sizes)
    n_layers = len(units) - 1
    coef_off = ends[:n_layers].astype(np.intp)
    bias_off = ends[n_layers:-1].astype(np.intp)
    return coef_off, bias_off, int(ends[-1])


def make_plan(units, hidden_activation, out_activation, loss, max_rows, gather):
    """Lay out a network of the given widths for passes of up to max_rows rows.

    Plans are cached and read-only: repeated small predicts reuse them.
    """
    return _make_plan(tuple(int(u) for u in units), hidden_activation,
                      out_activation, loss, int(max_rows), bool(gather))


@lru_cache(maxsize=64)
def _make_plan(units, hidden_activation, out_activation, loss, max_rows, gather):
    units = np.asarray(units, dtype=np.intp)
    coef_off, bias_off, n_params = param_offsets(units)
    widths = units[1:] * max_rows
    starts = np.cumsum(np.concatenate([[0], widths, widths]))
    n_layers = len(units) - 1
    act_off = starts[:n_layers].astype(np.intp)
    delta_off = starts[n_layers:-1].astype(np.intp)
    work_size = int(starts[-1])
    gather_off = -1
    if gather:
        gather_off = work_size
        work_size += int(units[0]) * max_rows
    for a in (units, coef_off, bias_off, act_off, delta_off):
        a.flags.writeable = False
    return Plan(
        units=units,
        coef_off=coef_off,
        bias_off=bias_off,
        n_params=n_params,
        act_off=act_off,
        delta_off=delta_off,
        gather_off=gather_off,
        max_rows=int(max_rows),
        work_size=work_size,
        hidden_act=ACTIVATIONS[hidden_activation],
        out_act=ACTIVATIONS[out_activation],
        loss=LOSSES[loss],
    )


def unpack(flat, units):
    """Views of flat as (coefs, intercepts) lists, in scikit-learn's shapes."""
    coef_off, bias_off, _ = param_offsets(units)
    coefs, intercepts = [], []
    for i, (fan_in, fan_out) in enumerate(pairwise(units)):
        start = coef_off[i]
        coefs.append(flat[start : start + fan_in * fan_out].reshape(fan_in, fan_out))
        intercepts.append(flat[bias_off[i] : bias_off[i] + fan_out])
    return coefs, intercepts


def pack(coefs, intercepts, dtype):
    """A new flat buffer holding coefs then intercepts."""
    parts = [np.ravel(c) for c in coefs] + [np.ravel(b) for b in intercepts]
    return np.concatenate(parts).astype(dtype, copy=False)


def glorot_init(units, activation, random_state, dtype):
    """Flat buffer with scikit-learn's Glorot-uniform init, drawn in its order.

    For each layer the coefficients are drawn, then the intercepts, from
    U(-b, b) with b = sqrt(factor / (fan_in + fan_out)); factor is 2 for the
    logistic activation and 6 otherwise (Glorot & Bengio, 2010).
    """
    factor = 2.0 if activation == "logistic" else 6.0
    coefs, intercepts = [], []
    for fan_in, fan_out in pairwise(units):
        bound = np.sqrt(factor / (fan_in + fan_out))
        coefs.append(random_state.uniform(-bound, bound, (fan_in, fan_out)))
        intercepts.append(random_state.uniform(-bound, bound, fan_out))
    return pack(coefs, intercepts, dtype)
