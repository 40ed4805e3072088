"""The AVX2 builds of the loops fastbp._simd dispatches (every update
rule, the L2 gradient, bias + activation and its derivative, the bias
gradient) give the SSE2 builds' bits: the same fits, in every activation,
in a process with FASTBP_NO_AVX2=1."""

import os
import subprocess
import sys

import pytest

from fastbp import _optimizers

FITS = r"""
import hashlib, sys, warnings
import numpy as np
from sklearn.datasets import make_classification
from fastbp import MLPClassifier, _optimizers
from fastbp._families import HIDDEN_ACTIVATIONS, SOLVER
warnings.simplefilter("ignore")
X, y = make_classification(300, 13, n_classes=3, n_informative=5, random_state=0)
digest = hashlib.sha256()
for dtype in (np.float64, np.float32):
    # Every solver of the table, and the variants of sgd's and adamw's rules.
    for params in [*({"solver": name} for name in SOLVER),
                   {"solver": "adamw", "weight_decay": 0.1},
                   {"solver": "sgd", "nesterovs_momentum": False},
                   {"solver": "sgd", "momentum": 0.0}]:
        # Odd layer sizes (292 parameters): the loops' vector bodies and
        # their scalar tails both run.
        est = MLPClassifier((17,), alpha=0.01, batch_size=37, max_iter=4,
                            random_state=0, **params).fit(X.astype(dtype), y)
        for a in est.coefs_ + est.intercepts_:
            digest.update(a.tobytes())
        digest.update(repr(est.loss_curve_).encode())
    for activation in HIDDEN_ACTIVATIONS:
        est = MLPClassifier((17,), activation=activation, alpha=0.01,
                            batch_size=37, max_iter=3, random_state=0
                            ).fit(X.astype(dtype), y)
        digest.update(est.predict_proba(X.astype(dtype)).tobytes())
        digest.update(repr(est.loss_curve_).encode())
print(_optimizers.AVX2, digest.hexdigest())
"""


def _run(no_avx2):
    env = dict(os.environ)
    env.pop("FASTBP_NO_AVX2", None)
    if no_avx2:
        env["FASTBP_NO_AVX2"] = "1"
    out = subprocess.run([sys.executable, "-c", FITS], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0] == "True", out[1]


@pytest.mark.skipif(not _optimizers.AVX2, reason="this CPU runs the SSE2 build only")
def test_avx2_build_gives_the_sse2_bits():
    avx2, with_avx2 = _run(no_avx2=False)
    sse2, without = _run(no_avx2=True)
    assert avx2 and not sse2  # the switch took effect in both processes
    assert with_avx2 == without
