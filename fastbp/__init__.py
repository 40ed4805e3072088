"""fastbp: compiled backpropagation behind scikit-learn's MLP interface."""

from fastbp._mlp import MLPClassifier, MLPRegressor
from fastbp._onnx import to_onnx

__version__ = "0.1.0"
__all__ = ["MLPClassifier", "MLPRegressor", "__version__", "to_onnx"]
