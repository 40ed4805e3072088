"""fastbp: compiled backpropagation behind scikit-learn's MLP interface."""

from fastbp._mlp import FastbpVersionWarning, MLPClassifier, MLPRegressor
from fastbp._onnx import to_onnx
from fastbp._version import __version__

__all__ = [
    "FastbpVersionWarning",
    "MLPClassifier",
    "MLPRegressor",
    "__version__",
    "to_onnx",
]
