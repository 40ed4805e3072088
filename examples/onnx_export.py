"""
Export a fitted classifier to ONNX and predict with onnxruntime
===============================================================

    pip install "fastbp[onnx]" onnxruntime && python examples/onnx_export.py
"""

import numpy as np
import onnxruntime as rt
from sklearn.datasets import load_digits

import fastbp


def main():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    clf = fastbp.MLPClassifier((64,), max_iter=20, random_state=0).fit(X, y)
    session = rt.InferenceSession(fastbp.to_onnx(clf).SerializeToString())
    label, proba = session.run(None, {"X": X})
    agree = np.mean(label == clf.predict(X))
    gap = np.abs(proba - clf.predict_proba(X)).max()
    print(f"onnxruntime labels agree with fastbp on {agree:.1%} of samples; "
          f"largest probability difference {gap:.1e}")
    return agree, gap


if __name__ == "__main__":
    main()
