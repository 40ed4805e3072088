"""Smoke test of an installed fastbp (a wheel), run from outside the source tree.

Checks that fastbp comes from site-packages with its compiled modules, that
no Cython is needed at run time, and that the compiled engine trains and
predicts as its NumPy twin does.
"""

import importlib.util
import pathlib
import sys
import sysconfig
import warnings

import numpy as np
from sklearn.datasets import load_iris

import fastbp
from fastbp import MLPClassifier, MLPRegressor

here = pathlib.Path(fastbp.__file__).resolve().parent
site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
assert here.parent in (site, pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()), (
    f"fastbp was imported from {here}, not from the environment's site-packages")
assert importlib.util.find_spec("Cython") is None, "Cython is installed"
for name in ("_pool", "_blas", "_kernels", "_optimizers", "_epoch", "_curvature",
             "_snapshot"):
    module = importlib.import_module(f"fastbp.{name}")
    assert pathlib.Path(module.__file__).suffix in (".so", ".pyd"), module.__file__

warnings.simplefilter("ignore")  # short fits: ConvergenceWarning
X, y = load_iris(return_X_y=True)
X = (X - X.mean(0)) / X.std(0)
fits = {backend: MLPClassifier((8,), solver="sgd", learning_rate_init=0.1, max_iter=50, random_state=0,
                               backend=backend).fit(X, y)
        for backend in ("cython", "numpy")}
gap = np.abs(fits["cython"].predict_proba(X) - fits["numpy"].predict_proba(X)).max()
assert gap < 1e-10, f"compiled and NumPy engines differ by {gap}"
assert fits["cython"].score(X, y) > 0.85
reg = MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=50,
                   random_state=0).fit(X[:, :3], X[:, 3])
assert reg.score(X[:, :3], X[:, 3]) > 0.8
print(f"fastbp {fastbp.__version__} from {here} on Python {sys.version.split()[0]}: "
      f"ok (engines agree to {gap:.1e})")
