"""Export a fitted fastbp network to ONNX (optional extra: ``onnx``).

The graph is the network itself, built with ``onnx.helper``: per layer a
MatMul, an Add and the activation's ONNX operator; then the estimator's
decoding (class labels and probabilities, or the regression output).
"""

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils.validation import check_is_fitted

# fastbp activation name -> ONNX operator and its attributes. The others are
# composed of elementary nodes in _activation_nodes: opset 17 has no Gelu,
# and onnxruntime's CPU provider has no double kernels for Elu, Softplus,
# Softsign or Erf.
_ONNX_OPS = {
    "identity": None,
    "logistic": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "relu": ("Relu", {}),
    "softmax": ("Softmax", {"axis": 1}),
    "exp": ("Exp", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.01}),
}
_COMPOSED = ("gelu", "silu", "elu", "softplus", "softsign")
_OPSET = 17


def to_onnx(estimator, *, dtype=np.float32, name=None):
    """Convert a fitted MLPClassifier or MLPRegressor to an ONNX model.

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
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError(
            "to_onnx needs the 'onnx' package: pip install 'fastbp[onnx]'"
        ) from exc
    import fastbp
    from fastbp._network import hidden_activations

    check_is_fitted(estimator, "coefs_")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    acts = hidden_activations(estimator.activation, estimator.n_layers_ - 2)
    acts = acts + [estimator.out_activation_]
    for act in acts:
        if act not in _ONNX_OPS and act not in _COMPOSED:
            raise ValueError(f"activation {act!r} has no ONNX export")

    nodes, inits = [], []

    def const(arr, label):
        inits.append(numpy_helper.from_array(np.asarray(arr), label))
        return label

    A = "X"
    for i, (W, b, act) in enumerate(
        zip(*_folded_layers(estimator), acts, strict=True)
    ):
        Z = f"z{i}"
        nodes.append(helper.make_node(
            "MatMul", [A, const(W.astype(dtype), f"W{i}")], [f"xw{i}"]))
        nodes.append(helper.make_node(
            "Add", [f"xw{i}", const(b.astype(dtype), f"b{i}")], [Z]))
        A = _activation_nodes(act, Z, f"a{i}", nodes, const, dtype)

    n_out = estimator.n_outputs_
    x_info = helper.make_tensor_value_info(
        "X", elem, [None, estimator.coefs_[0].shape[0]])
    if is_classifier(estimator):
        outputs = _decode_classes(estimator, A, nodes, const, dtype)
    else:
        nodes.append(helper.make_node("Identity", [A], ["variable"]))
        outputs = [helper.make_tensor_value_info("variable", elem, [None, n_out])]

    graph = helper.make_graph(
        nodes, name or type(estimator).__name__, [x_info], outputs, inits)
    model = helper.make_model(
        graph, producer_name="fastbp", producer_version=fastbp.__version__,
        opset_imports=[helper.make_opsetid("", _OPSET)])
    helper.set_model_props(model, {"fastbp_version": fastbp.__version__})
    onnx.checker.check_model(model)
    return model


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


def _activation_nodes(act, Z, A, nodes, const, dtype):
    """Append the nodes computing A = act(Z); return the output's name."""
    from onnx import TensorProto, helper

    def node(op, inputs, out=None, **attrs):
        out = out or f"{A}_{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def c(value, tag):
        return const(np.array(value, dtype), f"{A}_{tag}")

    if act == "gelu":  # exact: 0.5 z (1 + erf(z / sqrt(2)))
        s = node("Mul", [Z, c(np.sqrt(0.5), "r2")])
        if dtype == np.float64:  # no double Erf kernel: erf in float32
            s = node("Cast", [s], to=TensorProto.FLOAT)
            e = node("Cast", [node("Erf", [s])], to=TensorProto.DOUBLE)
        else:
            e = node("Erf", [s])
        node("Mul", [node("Mul", [Z, c(0.5, "half")]), node("Add", [e, c(1, "one")])],
             A)
    elif act == "silu":  # z * sigmoid(z)
        node("Mul", [Z, node("Sigmoid", [Z])], A)
    elif act == "elu":  # z if z > 0 else exp(min(z, 0)) - 1
        zero = c(0, "zero")
        neg = node("Sub", [node("Exp", [node("Min", [Z, zero])]), c(1, "one")])
        node("Where", [node("Greater", [Z, zero]), Z, neg], A)
    elif act == "softplus":  # max(z, 0) + log(1 + exp(-|z|)): no overflow
        tail = node("Log", [node("Add", [
            node("Exp", [node("Neg", [node("Abs", [Z])])]), c(1, "one")])])
        node("Add", [node("Relu", [Z]), tail], A)
    elif act == "softsign":  # z / (1 + |z|)
        node("Div", [Z, node("Add", [node("Abs", [Z]), c(1, "one")])], A)
    elif _ONNX_OPS[act] is None:
        return Z
    else:
        op, attrs = _ONNX_OPS[act]
        node(op, [Z], A, **attrs)
    return A


def _decode_classes(estimator, A, nodes, const, dtype):
    """Nodes turning output activations A into ``label`` and ``probabilities``.

    Mirrors LabelBinarizer.inverse_transform: p > 0.5 for one logistic
    output or multilabel columns, the first argmax for softmax.
    """
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE

    def over_half(out):  # LabelBinarizer's threshold, as 0/1 int64
        half = const(np.array(0.5, dtype), "half")
        nodes.append(helper.make_node("Greater", [A, half], ["on"]))
        nodes.append(helper.make_node("Cast", ["on"], [out], to=TensorProto.INT64))

    classes = estimator.classes_
    kind = estimator._label_binarizer.y_type_
    n_classes = len(classes)
    if classes.dtype.kind in "OUS":
        label_type, table = TensorProto.STRING, np.array(
            [str(c) for c in classes], dtype=object)
    elif classes.dtype.kind == "f":
        label_type, table = TensorProto.DOUBLE, classes.astype(np.float64)
    else:  # integers and booleans
        label_type, table = TensorProto.INT64, classes.astype(np.int64)
    if kind == "multilabel-indicator":
        nodes.append(helper.make_node("Identity", [A], ["probabilities"]))
        over_half("label")
        label = helper.make_tensor_value_info(
            "label", TensorProto.INT64, [None, n_classes])
    else:
        if estimator.n_outputs_ == 1:
            # Binary: one logistic unit p; probabilities are [1 - p, p].
            one = const(np.array(1, dtype), "one")
            nodes.append(helper.make_node("Sub", [one, A], ["q"]))
            nodes.append(helper.make_node(
                "Concat", ["q", A], ["probabilities"], axis=1))
            over_half("on64")
            nodes.append(helper.make_node(
                "Squeeze", ["on64", const(np.array([1]), "axis1")], ["index"]))
        else:
            nodes.append(helper.make_node("Identity", [A], ["probabilities"]))
            nodes.append(helper.make_node(
                "ArgMax", [A], ["index"], axis=1, keepdims=0,
                select_last_index=0))
        nodes.append(helper.make_node(
            "Gather", [const(table, "classes"), "index"], ["label"], axis=0))
        label = helper.make_tensor_value_info("label", label_type, [None])
    proba = helper.make_tensor_value_info("probabilities", elem, [None, n_classes])
    return [label, proba]

