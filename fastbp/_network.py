"""Network layout: the flat parameter buffer, its views, init, workspace.

The flat buffer holds every coefficient matrix (row-major, layer by layer)
followed by every intercept vector, the order of scikit-learn's ``_pack``;
with batch normalization, each normalized layer's scale (gamma) and shift
(beta) follow, layer by layer, after all intercepts.
``coefs_[i]`` and ``intercepts_[i]`` are views into it, so optimizers, norm
clipping, L-BFGS and best-weight snapshots all work on one array.
"""

from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import pairwise

import numpy as np

from fastbp._kernels import ACTIVATIONS, LOSSES, NEEDS_PREACTIVATION


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
    pre_off : ndarray of shape (n_layers,), intp
        Offsets of each layer's pre-activations, kept for the activations
        whose derivative needs them (GELU, SiLU); -1 for the other layers.
    gather_off : int
        Offset of the (max_rows, units[0]) buffer that shuffled dense batches
        are gathered into; -1 when there is none.
    max_rows : int
        Most rows one pass handles (the batch size).
    work_size : int
        Length of the workspace.
    acts : ndarray of shape (n_layers,), intp
        Activation code of every layer, the output layer's last.
    drop : ndarray of shape (n_layers,), float64
        Inverted-dropout rate of each layer's activations in training (0 for
        the output layer and for layers without dropout).
    mask_off : ndarray of shape (n_layers,), intp
        Offsets of the dropout masks (max_rows, units[l + 1]); -1 where
        drop is 0.
    drop_col : ndarray of shape (n_layers,), intp
        First column of each layer in the dropout counter space, whose rows
        are drop_width wide (the hidden widths side by side).
    bn_off : ndarray of shape (n_layers,), intp
        Offset in the flat buffer of each batch-normalized layer's scale
        (units[l + 1] values, its shift right after); -1 for other layers.
    zhat_off, bn_stat_off : ndarray of shape (n_layers,), intp
        Workspace offsets of the normalized pre-activations (max_rows,
        units[l + 1]) and of the statistics in use (mean, variance and
        1 / sqrt(variance + eps), units[l + 1] each); -1 without batch norm.
    run_off : ndarray of shape (n_layers,), intp
        Offsets of the running mean then running variance in the running
        statistics buffer (length n_running); -1 without batch norm.
    n_running : int
        Length of the running statistics buffer (0 without batch norm).
    out_act, loss : int
        Codes of the output activation and the loss.
    loss_param : float
        The Huber delta (loss "huber") or the quantile (loss "quantile");
        0 for the other losses.
    """

    units: np.ndarray
    coef_off: np.ndarray
    bias_off: np.ndarray
    n_params: int
    act_off: np.ndarray
    delta_off: np.ndarray
    pre_off: np.ndarray
    gather_off: int
    max_rows: int
    work_size: int
    acts: np.ndarray
    drop: np.ndarray
    mask_off: np.ndarray
    drop_col: np.ndarray
    drop_width: int
    out_act: int
    loss: int
    bn_off: np.ndarray = None
    zhat_off: np.ndarray = None
    bn_stat_off: np.ndarray = None
    run_off: np.ndarray = None
    n_running: int = 0
    loss_param: float = 0.0


def param_offsets(units):
    """Offsets of coefficients and intercepts in the flat buffer, and its length."""
    units = list(units)
    sizes = [a * b for a, b in pairwise(units)] + units[1:]
    ends = np.cumsum([0] + sizes)
    n_layers = len(units) - 1
    coef_off = ends[:n_layers].astype(np.intp)
    bias_off = ends[n_layers:-1].astype(np.intp)
    return coef_off, bias_off, int(ends[-1])


def hidden_activations(activation, n_hidden):
    """The activation name of each hidden layer: one name, or one per layer."""
    if isinstance(activation, str):
        return [activation] * n_hidden
    activation = list(activation)
    if len(activation) != n_hidden:
        raise ValueError(
            f"The 'activation' parameter must be one name or one name per hidden "
            f"layer; got {len(activation)} names for {n_hidden} hidden layers."
        )
    return activation


def hidden_dropout(dropout, n_hidden):
    """The dropout rate of each hidden layer: one rate, or one per layer."""
    if not isinstance(dropout, (list, tuple)):
        return [float(dropout)] * n_hidden
    if len(dropout) != n_hidden:
        raise ValueError(
            f"The 'dropout' parameter must be one rate or one rate per hidden "
            f"layer; got {len(dropout)} rates for {n_hidden} hidden layers."
        )
    return [float(r) for r in dropout]


def batch_norm_layers(batch_norm, n_layers):
    """Which layers are batch-normalized: True means every hidden layer;
    a sequence gives one flag per layer (the output layer's included)."""
    if isinstance(batch_norm, (bool, np.bool_)):
        return (bool(batch_norm),) * (n_layers - 1) + (False,)
    flags = tuple(bool(f) for f in batch_norm)
    if len(flags) != n_layers:
        raise ValueError(f"batch_norm needs one flag per layer, got {flags}")
    return flags


def bn_sizes(units, batch_norm):
    """Numbers of batch-norm parameters (scale and shift) and of running
    statistics (mean and variance): twice the normalized widths each."""
    flags = batch_norm_layers(batch_norm, len(units) - 1)
    n = 2 * sum(int(u) for u, f in zip(units[1:], flags, strict=True) if f)
    return n, n


def make_plan(units, hidden_activation, out_activation, loss, max_rows, gather,
              dropout=0.0, batch_norm=False, loss_param=0.0):
    """Lay out a network of the given widths for passes of up to max_rows rows.

    hidden_activation is one name for every hidden layer or a list of names,
    one per hidden layer; dropout likewise one rate or one per hidden layer;
    batch_norm True for every hidden layer or one flag per layer; loss_param
    the Huber delta or the quantile of those losses.
    Plans are cached and read-only: repeated small predicts reuse them.
    """
    def frozen(v):
        return v if isinstance(v, (str, float, int)) else tuple(v)

    return _make_plan(tuple(int(u) for u in units), frozen(hidden_activation),
                      out_activation, loss, int(max_rows), bool(gather),
                      frozen(dropout),
                      batch_norm if isinstance(batch_norm, bool)
                      else tuple(batch_norm), float(loss_param))


@lru_cache(maxsize=64)
def _make_plan(units, hidden_activation, out_activation, loss, max_rows, gather,
               dropout, batch_norm, loss_param):
    bn_flags = batch_norm_layers(batch_norm, len(units) - 1)
    units = np.asarray(units, dtype=np.intp)
    names = hidden_activations(hidden_activation, len(units) - 2)
    acts = np.array([ACTIVATIONS[a] for a in names + [out_activation]], np.intp)
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
    pre_off = np.full(n_layers, -1, dtype=np.intp)
    for i, code in enumerate(acts):
        if code in NEEDS_PREACTIVATION:
            pre_off[i] = work_size
            work_size += int(units[i + 1]) * max_rows
    drop = np.array(hidden_dropout(dropout, n_layers - 1) + [0.0])
    if not all(0 <= r < 1 for r in drop):
        raise ValueError(f"dropout rates must be in [0, 1), got {dropout!r}.")
    mask_off = np.full(n_layers, -1, dtype=np.intp)
    for i in np.flatnonzero(drop):
        mask_off[i] = work_size
        work_size += int(units[i + 1]) * max_rows
    drop_col = np.concatenate([[0], np.cumsum(units[1:-1])]).astype(np.intp)
    bn_off, zhat_off, bn_stat_off, run_off = (
        np.full(n_layers, -1, dtype=np.intp) for _ in range(4)
    )
    n_running = 0
    for i in np.flatnonzero(bn_flags):
        width = int(units[i + 1])
        bn_off[i] = n_params
        n_params += 2 * width
        run_off[i] = n_running
        n_running += 2 * width
        zhat_off[i] = work_size
        work_size += width * max_rows
        bn_stat_off[i] = work_size
        work_size += 3 * width
    for a in (units, coef_off, bias_off, act_off, delta_off, pre_off, acts, drop,
              mask_off, drop_col, bn_off, zhat_off, bn_stat_off, run_off):
        a.flags.writeable = False
    return Plan(
        units=units,
        coef_off=coef_off,
        bias_off=bias_off,
        n_params=n_params,
        act_off=act_off,
        delta_off=delta_off,
        pre_off=pre_off,
        gather_off=gather_off,
        max_rows=int(max_rows),
        work_size=work_size,
        acts=acts,
        drop=drop,
        mask_off=mask_off,
        drop_col=drop_col,
        drop_width=int(drop_col[-1]),
        out_act=ACTIVATIONS[out_activation],
        loss=LOSSES[loss],
        bn_off=bn_off,
        zhat_off=zhat_off,
        bn_stat_off=bn_stat_off,
        run_off=run_off,
        n_running=n_running,
        loss_param=loss_param,
    )


def bn_views(flat, running, plan):
    """Views of each batch-normalized layer's (scale, shift) in flat and
    (mean, variance) in running; None for the other layers."""
    params, stats = [], []
    for i, (p, r) in enumerate(zip(plan.bn_off, plan.run_off, strict=True)):
        if p < 0:
            params.append(None)
            stats.append(None)
            continue
        m = int(plan.units[i + 1])
        params.append((flat[p : p + m], flat[p + m : p + 2 * m]))
        stats.append(None if running is None
                     else (running[r : r + m], running[r + m : r + 2 * m]))
    return params, stats


def unpack(flat, units):
    """Views of flat as (coefs, intercepts) lists, in scikit-learn's shapes."""
    coef_off, bias_off, _ = param_offsets(units)
    coefs, intercepts = [], []
    for i, (fan_in, fan_out) in enumerate(pairwise(units)):
        start = coef_off[i]
        coefs.append(flat[start : start + fan_in * fan_out].reshape(fan_in, fan_out))
        intercepts.append(flat[bias_off[i] : bias_off[i] + fan_out])
    return coefs, intercepts


def reading_params_of(plan, whole):
    """plan (the first layers of a network) with its parameters and running
    statistics where the whole network's plan keeps them: a pass over the
    whole network's buffers computes the first layers only, with no copy."""
    n = len(plan.coef_off)
    changes = {"coef_off": whole.coef_off[:n], "bias_off": whole.bias_off[:n],
               "n_params": whole.n_params}
    if whole.n_running:
        changes.update(bn_off=whole.bn_off[:n], run_off=whole.run_off[:n],
                       n_running=whole.n_running)
    return replace(plan, **changes)


def pack(coefs, intercepts, dtype):
    """A new flat buffer holding coefs then intercepts."""
    parts = [np.ravel(c) for c in coefs] + [np.ravel(b) for b in intercepts]
    return np.concatenate(parts).astype(dtype, copy=False)


def glorot_init(units, activation, random_state, dtype):
    """Flat buffer with scikit-learn's Glorot-uniform init, drawn in its order.

    For each layer the coefficients are drawn, then the intercepts, from
    U(-b, b) with b = sqrt(factor / (fan_in + fan_out)); factor is 2 for the
    logistic activation and 6 otherwise (Glorot & Bengio, 2010). With one
    activation per hidden layer, each layer uses its own activation's factor
    and the output layer the last hidden layer's.
    """
    names = hidden_activations(activation, len(units) - 2)
    names = names + names[-1:] if names else [activation] * (len(units) - 1)
    coefs, intercepts = [], []
    for (fan_in, fan_out), name in zip(pairwise(units), names, strict=True):
        factor = 2.0 if name == "logistic" else 6.0
        bound = np.sqrt(factor / (fan_in + fan_out))
        coefs.append(random_state.uniform(-bound, bound, (fan_in, fan_out)))
        intercepts.append(random_state.uniform(-bound, bound, fan_out))
    return pack(coefs, intercepts, dtype)


def init_batch_norm(units, dtype):
    """Initial batch-norm parameters of every hidden layer, to follow the
    intercepts in the flat buffer (scale 1, shift 0), and the initial
    running statistics (mean 0, variance 1), as PyTorch's BatchNorm1d."""
    params, running = [np.empty(0)], [np.empty(0)]
    for m in units[1:-1]:
        params += [np.ones(m), np.zeros(m)]
        running += [np.zeros(m), np.ones(m)]
    return (np.concatenate(params).astype(dtype),
            np.concatenate(running).astype(dtype))


def fitted_arrays(flat, units, running=None):
    """The fitted attributes that view flat (and running): coefs_,
    intercepts_ and the batch_norm_*_ lists (None without batch norm)."""
    coefs, intercepts = unpack(flat, units)
    bn = (None,) * 4
    if running is not None:
        bn = batch_norm_attributes(flat, running, units)
    names = ("coefs_", "intercepts_", "batch_norm_scale_", "batch_norm_shift_",
             "batch_norm_mean_", "batch_norm_var_")
    return dict(zip(names, (coefs, intercepts, *bn), strict=True))


def batch_norm_attributes(flat, running, units):
    """Lists of views, one per hidden layer, of the scales and shifts in flat
    and of the running means and variances in running."""
    plan = make_plan(units, "identity", "identity", "squared_error", 1, False,
                     batch_norm=True)
    params, stats = bn_views(flat, running, plan)
    params, stats = params[:-1], stats[:-1]
    return ([p[0] for p in params], [p[1] for p in params],
            [s[0] for s in stats], [s[1] for s in stats])
