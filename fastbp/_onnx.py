"""Export a fitted fastbp network to ONNX (optional extra: ``onnx``).

The graph is the network itself: per layer a MatMul, an Add and the
activation's ONNX operator; then the estimator's decoding (class labels and
probabilities, or the regression output). The nodes are written through a
small graph interface (``fresh``, ``const``, ``node``), so that ``to_onnx``
(with ``onnx.helper``) and the skl2onnx converter of ``fastbp._skl2onnx``
(with skl2onnx's scope and container) build the same network.
"""

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils.validation import check_is_fitted

from fastbp._families import ACTIVATION

# Each activation's ONNX operator is its row's onnx fact; the others are
# composed of elementary nodes in _activation_nodes: opset 17 has no Gelu,
# and onnxruntime's CPU provider has no double kernels for Elu, Softplus,
# Softsign or Erf.
_OPSET = 17


class _Graph:
    """Where nodes and constants go; subclasses say how names are made and
    how a node or an initializer is added."""

    def node(self, op, inputs, out=None, **attrs):
        """Add node ``op``; return its output's name (a fresh one if None)."""
        out = out or self.fresh(op.lower())
        self._add_node(op, list(inputs), out, attrs)
        return out

    def const(self, value, hint):
        """Add an initializer holding ``value``; return its name."""
        name = self.fresh(hint)
        self._add_const(name, np.asarray(value))
        return name


class _HelperGraph(_Graph):
    """Nodes and initializers as onnx.helper protos, for ``to_onnx``."""

    def __init__(self):
        self.nodes, self.inits, self._count = [], [], 0

    def fresh(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def _add_node(self, op, inputs, out, attrs):
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))

    def _add_const(self, name, value):
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(value, name))


def to_onnx(estimator, *, dtype=np.float32, name=None):
    """Convert a fitted MLPClassifier or MLPRegressor to an ONNX model.

    For a pipeline (or any scikit-learn composition) holding a fastbp
    estimator, use ``skl2onnx.to_onnx``: importing skl2onnx registers
    fastbp's converters with it (see ``fastbp._skl2onnx``).

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        A fitted fastbp estimator.
    dtype : {np.float32, np.float64}, default=np.float32
        Element type of the input ``X`` and of all weights in the graph.
    name : str, default=None
        Graph name; the estimator's class name when None.

    Returns
    -------
    model : onnx.ModelProto
        One input ``X`` of shape (N, n_features). A classifier has outputs
        ``label`` (shape (N,), or (N, n_labels) of 0/1 for multilabel
        targets) and ``probabilities`` (N, n_classes), as ``predict`` and
        ``predict_proba``; a regressor has ``variable`` (N, n_outputs), as
        ``predict`` before its single-output column is raveled. The fastbp
        version is stored in the model's metadata.

    Examples
    --------
    >>> import onnxruntime as rt  # doctest: +SKIP
    >>> model = fastbp.to_onnx(clf)  # doctest: +SKIP
    >>> sess = rt.InferenceSession(model.SerializeToString())  # doctest: +SKIP
    >>> label, proba = sess.run(None, {"X": X.astype(np.float32)})  # doctest: +SKIP
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError(
            "to_onnx needs the 'onnx' package: pip install 'fastbp[onnx]'"
        ) from exc
    import fastbp

    check_estimator(estimator, "fastbp.to_onnx")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE

    g = _HelperGraph()
    A = network_nodes(g, estimator, "X", dtype)
    x_info = helper.make_tensor_value_info(
        "X", elem, [None, estimator.coefs_[0].shape[0]])
    if is_classifier(estimator):
        table = label_table(estimator.classes_, integral_floats_as_int64=False)
        class_nodes(g, estimator, A, dtype, table, "label", "probabilities")
        label_elem = (TensorProto.STRING if table.dtype == object
                      else helper.np_dtype_to_tensor_dtype(table.dtype))
        label = helper.make_tensor_value_info(
            "label", label_elem, label_shape(estimator))
        proba = helper.make_tensor_value_info(
            "probabilities", elem, [None, len(estimator.classes_)])
        outputs = [label, proba]
    else:
        g.node("Identity", [A], "variable")
        outputs = [helper.make_tensor_value_info(
            "variable", elem, [None, estimator.n_outputs_])]

    graph = helper.make_graph(
        g.nodes, name or type(estimator).__name__, [x_info], outputs, g.inits)
    model = helper.make_model(
        graph, producer_name="fastbp", producer_version=fastbp.__version__,
        opset_imports=[helper.make_opsetid("", _OPSET)])
    helper.set_model_props(model, {"fastbp_version": fastbp.__version__})
    onnx.checker.check_model(model)
    return model


def check_estimator(estimator, caller):
    """TypeError unless ``estimator`` is a fastbp estimator; then fitted."""
    from fastbp._mlp import MLPClassifier, MLPRegressor

    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError(
            f"{caller} takes a fitted fastbp MLPClassifier or MLPRegressor, got "
            f"{type(estimator).__name__}. To export a Pipeline or another "
            f"scikit-learn composition holding a fastbp estimator, use "
            f"skl2onnx.to_onnx(model, X[:1]): importing skl2onnx registers "
            f"fastbp's converters with it (pip install 'fastbp[skl2onnx]')."
        )
    check_is_fitted(estimator, "coefs_")
    from fastbp._array_api import refuse

    refuse(f"{caller} (ONNX export)", coefs=estimator.coefs_)


def network_nodes(g, estimator, X, dtype):
    """Add the network's layers, input ``X``, to graph ``g``; return the name
    of the output layer's activations."""
    from fastbp._network import hidden_activations

    acts = hidden_activations(estimator.activation, estimator.n_layers_ - 2)
    acts = acts + [estimator.out_activation_]
    for act in acts:
        if act not in ACTIVATION:
            raise ValueError(f"activation {act!r} has no ONNX export")
    A = X
    for i, (W, b, act) in enumerate(
        zip(*_folded_layers(estimator), acts, strict=True)
    ):
        Z = g.node("Add", [g.node("MatMul", [A, g.const(W.astype(dtype), f"W{i}")]),
                           g.const(b.astype(dtype), f"b{i}")], g.fresh(f"z{i}"))
        A = _activation_nodes(g, act, Z, dtype)
    return A


def _folded_layers(estimator):
    """coefs_ and intercepts_, with batch norm at inference folded in.

    With running statistics, gamma (Z + b - mean) / sqrt(var + eps) + beta
    is the affine map Z s + (b - mean) s + beta, s = gamma / sqrt(var + eps):
    a scaling of W's columns and another intercept.
    """
    coefs, intercepts = list(estimator.coefs_), list(estimator.intercepts_)
    if getattr(estimator, "batch_norm_scale_", None) is None:
        return coefs, intercepts
    from fastbp._kernels import BATCH_NORM_EPS

    for i, (gamma, beta, mean, var) in enumerate(zip(
        estimator.batch_norm_scale_, estimator.batch_norm_shift_,
        estimator.batch_norm_mean_, estimator.batch_norm_var_, strict=True,
    )):
        scale = gamma / np.sqrt(var.astype(np.float64) + BATCH_NORM_EPS)
        coefs[i] = coefs[i] * scale
        intercepts[i] = (intercepts[i] - mean) * scale + beta
    return coefs, intercepts


def _activation_nodes(g, act, Z, dtype):
    """Add the nodes computing act(Z); return the output's name."""
    from onnx import TensorProto

    def c(value, tag):
        return g.const(np.array(value, dtype), tag)

    node = g.node
    if ACTIVATION[act].onnx is not None:
        op, attrs = ACTIVATION[act].onnx
        return node(op, [Z], **attrs)
    if act == "identity":
        return Z
    if act == "gelu":  # exact: 0.5 z (1 + erf(z / sqrt(2)))
        s = node("Mul", [Z, c(np.sqrt(0.5), "r2")])
        if dtype == np.float64:  # no double Erf kernel: erf in float32
            s = node("Cast", [s], to=TensorProto.FLOAT)
            e = node("Cast", [node("Erf", [s])], to=TensorProto.DOUBLE)
        else:
            e = node("Erf", [s])
        return node("Mul", [node("Mul", [Z, c(0.5, "half")]),
                            node("Add", [e, c(1, "one")])])
    if act == "silu":  # z * sigmoid(z)
        return node("Mul", [Z, node("Sigmoid", [Z])])
    if act == "elu":  # z if z > 0 else exp(min(z, 0)) - 1
        zero = c(0, "zero")
        neg = node("Sub", [node("Exp", [node("Min", [Z, zero])]), c(1, "one")])
        return node("Where", [node("Greater", [Z, zero]), Z, neg])
    if act == "softplus":  # max(z, 0) + log(1 + exp(-|z|)): no overflow
        tail = node("Log", [node("Add", [
            node("Exp", [node("Neg", [node("Abs", [Z])])]), c(1, "one")])])
        return node("Add", [node("Relu", [Z]), tail])
    if act == "softsign":  # z / (1 + |z|)
        return node("Div", [Z, node("Add", [node("Abs", [Z]), c(1, "one")])])
    raise ValueError(f"activation {act!r} has no ONNX export")


def label_table(classes, *, integral_floats_as_int64):
    """The class labels as an ONNX-typed array: strings (object), int64
    (integers, booleans, and integer-valued floats when asked: skl2onnx's
    ZipMap takes int64 or string keys only), or float64."""
    if classes.dtype.kind in "OUS":
        return np.array([str(c) for c in classes], dtype=object)
    if classes.dtype.kind in "iub":
        return classes.astype(np.int64)
    if integral_floats_as_int64 and np.all(classes == np.round(classes)):
        return classes.astype(np.int64)
    return classes.astype(np.float64)


def label_shape(estimator):
    """Shape of the ``label`` output: (N,), or (N, n_labels) for multilabel."""
    if estimator._label_binarizer.y_type_ == "multilabel-indicator":
        return [None, len(estimator.classes_)]
    return [None]


def class_nodes(g, estimator, A, dtype, table, label, proba):
    """Add the nodes turning output activations A into outputs ``label``
    (values from ``table``, one per class) and ``proba``.

    Mirrors LabelBinarizer.inverse_transform: p > 0.5 for one logistic
    output or multilabel columns, the first argmax for softmax.
    """
    from onnx import TensorProto

    def over_half(out=None):  # LabelBinarizer's threshold, as 0/1 int64
        on = g.node("Greater", [A, g.const(np.array(0.5, dtype), "half")])
        return g.node("Cast", [on], out, to=TensorProto.INT64)

    if estimator._label_binarizer.y_type_ == "multilabel-indicator":
        g.node("Identity", [A], proba)
        over_half(label)
        return
    if estimator.n_outputs_ == 1:
        # Binary: one logistic unit p; probabilities are [1 - p, p].
        q = g.node("Sub", [g.const(np.array(1, dtype), "one"), A])
        g.node("Concat", [q, A], proba, axis=1)
        index = g.node("Reshape", [over_half(), g.const(np.array([-1]), "flat")])
    else:
        g.node("Identity", [A], proba)
        index = g.node("ArgMax", [A], axis=1, keepdims=0)
    g.node("Gather", [g.const(table, "classes"), index], label, axis=0)
