"""scikit-learn's own test_mlp.py, run against fastbp's estimators.

The installed scikit-learn's test module is copied with one import changed
(``from sklearn.neural_network import MLPClassifier, MLPRegressor`` becomes
fastbp's) and run by pytest in a child process. The tests that reach into
scikit-learn's private attributes are left out, each with its reason; every
other test must pass.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sklearn

SOURCE = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor\n"
PRIVATE = {
    "test_gradient": "calls MLPClassifier._loss_grad_lbfgs",
    "test_learning_rate_warmstart": "reads _optimizer.learning_rate",
    "test_adaptive_learning_rate": "reads _optimizer.learning_rate",
}
# scikit-learn's conftest fixture, at its default seed.
CONFTEST = """
import pytest

@pytest.fixture
def global_random_seed():
    return 42
"""


@pytest.mark.skipif(not SOURCE.exists(), reason="scikit-learn ships no tests")
def test_scikit_learns_test_mlp_passes(tmp_path):
    source = SOURCE.read_text()
    assert source.count(IMPORT) == 1
    (tmp_path / "test_sklearn_mlp.py").write_text(
        source.replace(IMPORT, "from fastbp import MLPClassifier, MLPRegressor\n")
    )
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for name in PRIVATE:
        assert f"def {name}(" in source, f"{name} is gone: update PRIVATE"
    deselect = [f"--deselect=test_sklearn_mlp.py::{name}" for name in PRIVATE]
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-W", "ignore::DeprecationWarning", *deselect, "test_sklearn_mlp.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    tail = "\n".join(run.stdout.splitlines()[-30:])
    assert run.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail, tail
