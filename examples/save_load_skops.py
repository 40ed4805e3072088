"""
Save a fitted pipeline with skops and load it back trusting only fastbp
=======================================================================

    pip install "fastbp[skops]" && python examples/save_load_skops.py
"""

import numpy as np
import skops.io as sio
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier


def main():
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=20, random_state=0))
    pipe.fit(X, y)
    data = sio.dumps(pipe)
    untrusted = sio.get_untrusted_types(data=data)
    print("types to trust:", untrusted)
    loaded = sio.loads(data, trusted=untrusted)
    same = np.array_equal(loaded.predict(X), pipe.predict(X))
    print(f"{len(data)} bytes; loaded pipeline predicts the same: {same}")
    return untrusted, same


if __name__ == "__main__":
    main()
