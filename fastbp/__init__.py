"""fastbp: compiled backpropagation behind scikit-learn's MLP interface."""

from fastbp._lr_find import LRFinder, lr_find
from fastbp._mlflow import MLflowLogger
from fastbp._mlp import FastbpVersionWarning, MLPClassifier, MLPRegressor
from fastbp._onnx import to_onnx
from fastbp._second_order import MAX_HESSIAN_PARAMS, GradientCheck, check_gradients
from fastbp._skl2onnx import register_skl2onnx
from fastbp._tensorboard import TensorBoardLogger
from fastbp._version import __version__

__all__ = [
    "MAX_HESSIAN_PARAMS",
    "FastbpVersionWarning",
    "GradientCheck",
    "LRFinder",
    "MLPClassifier",
    "MLPRegressor",
    "MLflowLogger",
    "TensorBoardLogger",
    "__version__",
    "check_gradients",
    "lr_find",
    "register_skl2onnx",
    "to_onnx",
]
