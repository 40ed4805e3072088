"""TensorBoardLogger: the event files, read back with TensorBoard's own reader,
hold the fitted curves."""

import pickle
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import FailAfter
from fastbp import MLPClassifier, MLPRegressor, TensorBoardLogger

pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard (the event reader) is not installed")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


def _scalars(run_dir):
    """{tag: (steps, values)} as TensorBoard reads the run."""
    acc = event_accumulator.EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: (np.array([e.step for e in acc.Scalars(tag)]),
                  np.array([e.value for e in acc.Scalars(tag)]))
            for tag in acc.Tags()["scalars"]}


def _assert_curve(scalars, tag, curve, first_step=1):
    steps, values = scalars[tag]
    np.testing.assert_array_equal(steps, np.arange(first_step, first_step + len(curve)))
    np.testing.assert_allclose(values, curve, rtol=1e-6)  # stored as float32


def test_epoch_curves_are_written(tmp_path, digits):
    logger = TensorBoardLogger(tmp_path)
    clf = MLPClassifier((12,), solver="sgd", learning_rate="invscaling",
                        learning_rate_init=0.1, early_stopping=True, max_iter=7,
                        n_iter_no_change=50, random_state=0)
    clf.set_callbacks(logger).fit(*digits)
    (run_dir,) = logger.run_dirs_
    assert run_dir.parent == tmp_path
    scalars = _scalars(run_dir)
    assert sorted(scalars) == ["learning_rate", "loss", "validation/loss",
                               "validation/score"]
    _assert_curve(scalars, "loss", clf.loss_curve_)
    _assert_curve(scalars, "learning_rate", clf.learning_rate_curve_)
    _assert_curve(scalars, "validation/loss", clf.validation_loss_curve_)
    _assert_curve(scalars, "validation/score", clf.validation_scores_)
    assert len(clf.loss_curve_) == 7 and len(set(clf.learning_rate_curve_)) == 7


def test_warm_start_continues_the_steps(tmp_path, digits):
    logger = TensorBoardLogger(tmp_path)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=4, warm_start=True,
                       random_state=0).set_callbacks(logger)
    X, y = digits
    reg.fit(X, y)
    reg.fit(X, y)
    first, second = (_scalars(d) for d in logger.run_dirs_)
    _assert_curve(first, "loss", reg.loss_curve_[:4])
    _assert_curve(second, "loss", reg.loss_curve_[4:], first_step=5)
    assert "validation/loss" not in second  # no early stopping: no such curve


def test_newton_writes_each_iteration(tmp_path, digits):
    X, y = digits
    logger = TensorBoardLogger(tmp_path)
    clf = MLPClassifier((4,), solver="newton", max_iter=5, random_state=0)
    clf.set_callbacks(logger).fit(X, y % 2)
    scalars = _scalars(logger.run_dirs_[0])
    _assert_curve(scalars, "loss", clf.loss_curve_)


def test_one_run_per_fit_inside_a_search(tmp_path, digits):
    logger = TensorBoardLogger(tmp_path)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((6,), max_iter=3))
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2)
    search.set_callbacks(logger).fit(*digits)
    runs = logger.run_dirs_
    assert len(runs) == 2 * 2 + 1 and len(set(runs)) == len(runs)
    assert all(r.relative_to(tmp_path).parts[0].startswith("GridSearchCV-")
               for r in runs)
    for run in runs:
        steps, _ = _scalars(run)["loss"]
        np.testing.assert_array_equal(steps, [1, 2, 3])
    # The last run is the refit: the search's best estimator.
    _assert_curve(_scalars(runs[-1]), "loss", search.best_estimator_[-1].loss_curve_)


def test_a_failing_fit_closes_its_run(tmp_path, digits):
    logger = TensorBoardLogger(tmp_path)
    clf = MLPClassifier((6,), max_iter=5).set_callbacks(logger, FailAfter())
    with pytest.raises(RuntimeError, match="callback failed"):
        clf.fit(*digits)
    assert logger._runs == {}  # teardown closed the writer
    steps, _ = _scalars(logger.run_dirs_[0])["loss"]
    np.testing.assert_array_equal(steps, [1, 2])  # written before the failure


def test_pickles_without_its_writers(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger._runs[0] = ["an open writer", {}]
    clone = pickle.loads(pickle.dumps(logger))
    assert clone._runs == {} and clone.log_dir == tmp_path


def test_needs_tensorboardx(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"fastbp\[tensorboard\]"):
        TensorBoardLogger(tmp_path)
