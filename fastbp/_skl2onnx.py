"""fastbp's converters for skl2onnx, so that pipelines holding fastbp export.

Importing fastbp does not import skl2onnx. When skl2onnx is already imported,
fastbp registers its converters at once; otherwise a one-shot import hook
registers them right after skl2onnx's own import, so
``skl2onnx.to_onnx(make_pipeline(StandardScaler(), MLPClassifier()), X[:1])``
works in either import order. ``register_skl2onnx()`` does the same
explicitly (it is idempotent).

The converters build the network with the node code of ``fastbp._onnx`` and
follow skl2onnx's conventions for classifiers: outputs ``label`` and
``probabilities``, the options of skl2onnx's own MLPClassifier converter
(``zipmap``: True, False or "columns"; ``nocl``; ``output_class_labels``),
and integer-valued float classes given as int64 labels.
"""

import importlib.abc
import sys
import warnings

import numpy as np

from fastbp._onnx import class_nodes, label_shape, label_table, network_nodes

# The options skl2onnx's own MLPClassifier converter registers; "zipmap"
# makes skl2onnx parse the model with its classifier parser.
CLASSIFIER_OPTIONS = {
    "zipmap": [True, False, "columns"],
    "nocl": [True, False],
    "output_class_labels": [False, True],
}


def register_skl2onnx():
    """Register fastbp's shape calculators and converters with skl2onnx.

    Called by itself when skl2onnx is imported (before or after fastbp);
    call it again only if something reset skl2onnx's registry.

    Returns
    -------
    aliases : dict
        The skl2onnx alias registered for each fastbp estimator class.

    Examples
    --------
    >>> import skl2onnx  # doctest: +SKIP
    >>> pipe = make_pipeline(StandardScaler(), fastbp.MLPClassifier()).fit(X, y)  # doctest: +SKIP
    >>> onx = skl2onnx.to_onnx(pipe, X[:1].astype(np.float32),  # doctest: +SKIP
    ...                        options={"zipmap": False})
    """
    from skl2onnx import update_registered_converter

    from fastbp._mlp import MLPClassifier, MLPRegressor

    aliases = {MLPClassifier: "FastbpMLPClassifier",
               MLPRegressor: "FastbpMLPRegressor"}
    update_registered_converter(
        MLPClassifier, aliases[MLPClassifier], _classifier_shapes,
        _convert_classifier, options=CLASSIFIER_OPTIONS)
    update_registered_converter(
        MLPRegressor, aliases[MLPRegressor], _regressor_shapes, _convert_regressor)
    return aliases


class _Skl2OnnxGraph:
    """The graph interface of fastbp._onnx over skl2onnx's scope and container."""

    def __init__(self, scope, container):
        self._scope, self._container = scope, container

    def fresh(self, hint):
        return self._scope.get_unique_variable_name(hint)

    def node(self, op, inputs, out=None, **attrs):
        out = out or self.fresh(op.lower())
        self._container.add_node(
            op, list(inputs), [out], name=self._scope.get_unique_operator_name(op),
            **attrs)
        return out

    def const(self, value, hint):
        from onnx import TensorProto, numpy_helper

        name, value = self.fresh(hint), np.asarray(value)
        if value.dtype == object:  # strings: not raw data
            self._container.add_initializer(
                name, TensorProto.STRING, list(value.shape), value.ravel().tolist())
        else:
            tensor = numpy_helper.from_array(value)
            self._container.add_initializer(name, tensor.data_type,
                                            list(value.shape), tensor)
        return name


def _input(operator, g):
    """Name and dtype of the network's input: double stays double, any other
    type computes in float32 (as skl2onnx's MLP converter does)."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    X, kind = operator.inputs[0].full_name, type(operator.inputs[0].type)
    if kind is DoubleTensorType:
        return X, np.dtype(np.float64)
    if kind is not FloatTensorType:
        X = g.node("Cast", [X], to=TensorProto.FLOAT)
    return X, np.dtype(np.float32)


def _float_type(operator):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    if isinstance(operator.inputs[0].type, DoubleTensorType):
        return DoubleTensorType
    return FloatTensorType


def _classes(scope, estimator):
    """Label table honouring the ``nocl`` option (class indices for labels)."""
    from skl2onnx.common.utils_classifier import get_label_classes

    return label_table(np.asarray(get_label_classes(scope, estimator)),
                       integral_floats_as_int64=True)


def _check_input(operator, n_outputs):
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
    )
    from skl2onnx.common.utils import (
        check_input_and_output_numbers,
        check_input_and_output_types,
    )

    check_input_and_output_numbers(
        operator, input_count_range=1, output_count_range=n_outputs)
    check_input_and_output_types(operator, good_input_types=[
        BooleanTensorType, DoubleTensorType, FloatTensorType, Int64TensorType])


def _classifier_shapes(operator):
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        Int64TensorType,
        StringTensorType,
    )

    _check_input(operator, 2)
    est = operator.raw_operator
    N = operator.inputs[0].get_first_dimension()
    table = _classes(operator.scope_inst, est)
    label_type = {"O": StringTensorType, "i": Int64TensorType,
                  "f": DoubleTensorType}[table.dtype.kind]
    operator.outputs[0].set_type(label_type([N, *label_shape(est)[1:]]))
    operator.outputs[1].set_type(_float_type(operator)([N, len(est.classes_)]))


def _regressor_shapes(operator):
    _check_input(operator, 1)
    N = operator.inputs[0].get_first_dimension()
    n_outputs = operator.raw_operator.n_outputs_
    operator.outputs[0].set_type(_float_type(operator)([N, n_outputs]))


def _convert_classifier(scope, operator, container):
    est = operator.raw_operator
    g = _Skl2OnnxGraph(scope, container)
    X, dtype = _input(operator, g)
    A = network_nodes(g, est, X, dtype)
    class_nodes(g, est, A, dtype, _classes(scope, est),
                operator.outputs[0].full_name, operator.outputs[1].full_name)


def _convert_regressor(scope, operator, container):
    g = _Skl2OnnxGraph(scope, container)
    X, dtype = _input(operator, g)
    A = network_nodes(g, operator.raw_operator, X, dtype)
    g.node("Identity", [A], operator.outputs[0].full_name)


def _register_or_warn():
    try:
        register_skl2onnx()
    except Exception as exc:  # an skl2onnx whose registry API changed
        warnings.warn(
            f"fastbp could not register its skl2onnx converters ({exc!r}); "
            f"pipelines holding fastbp estimators will not convert.",
            stacklevel=3)


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when skl2onnx is about to be imported, it wraps
    the real loader so that the converters are registered right after
    skl2onnx's own module has run. One shot: it leaves sys.meta_path then."""

    def find_spec(self, name, path, target=None):
        if name != "skl2onnx":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = getattr(finder, "find_spec", lambda *a: None)(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec

        def exec_and_register(module):
            del loader.exec_module  # back to the class's method
            loader.exec_module(module)
            _register_or_warn()

        loader.exec_module = exec_and_register
        return spec


def _register_when_imported():
    if "skl2onnx" in sys.modules:
        _register_or_warn()
    elif not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())


_register_when_imported()
