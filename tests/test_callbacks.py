"""scikit-learn's callback framework (sklearn.callback) on fastbp estimators."""

import numpy as np
import pytest
from sklearn.callback import ProgressBar, ScoringMonitor
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastbp import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


class Recorder:
    """Records every hook; auto-propagated so meta-estimators pass it down."""

    max_propagation_depth = None

    def __init__(self, stop_after=None, fail_after=None):
        self.stop_after = stop_after
        self.fail_after = fail_after
        self.events = []

    def setup(self, estimator, context):
        self.events.append(("setup", type(estimator).__name__, None))

    def teardown(self, estimator, context):
        self.events.append(("teardown", type(estimator).__name__, None))

    def on_fit_task_begin(self, estimator, context, *, metadata=None):
        self.events.append(("begin", type(estimator).__name__, context.task_name))

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None,
                        metadata=None):
        self.events.append(("end", type(estimator).__name__, context.task_name))
        self.last_metadata = metadata
        ended = sum(e[0] == "end" and e[2] in ("epoch", "iteration")
                    for e in self.events)
        if self.fail_after is not None and ended >= self.fail_after:
            raise RuntimeError("callback failed")
        return self.stop_after is not None and ended >= self.stop_after

    def tasks(self, estimator_name, what="end"):
        return [t for e, n, t in self.events if e == what and n == estimator_name]


def _scores(monitor):
    rows = monitor.get_logs().data
    return [r["accuracy"] for r in rows if r["task_name"] != "fit"]


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs", "newton"])
def test_scoring_monitor_scores_the_model_after_each_step(digits, solver):
    # Oracle: the model after k epochs (iterations) is the model fitted with
    # max_iter=k from the same random_state.
    X, y = digits
    monitor = ScoringMonitor(scoring="accuracy")
    params = dict(hidden_layer_sizes=(15,), solver=solver, random_state=0,
                  learning_rate_init=0.05 if solver == "sgd" else 0.001)
    est = MLPClassifier(max_iter=6, **params).set_callbacks(monitor)
    est.fit(X, y)
    scores = _scores(monitor)
    assert len(scores) == est.n_iter_ == 6
    for k in (1, 3, 6):
        ref = MLPClassifier(max_iter=k, **params).fit(X, y)
        assert scores[k - 1] == pytest.approx(ref.score(X, y), abs=1e-12)
    root = [r for r in monitor.get_logs().data if r["task_name"] == "fit"]
    assert root[0]["accuracy"] == pytest.approx(est.score(X, y))


@pytest.mark.parametrize("solver", ["adam", "lbfgs", "newton"])
def test_every_begin_has_an_end(digits, solver):
    X, y = digits
    rec = Recorder()
    est = MLPClassifier((10,), solver=solver, max_iter=4, random_state=0)
    est.set_callbacks(rec).fit(X, y)
    steps = "epoch" if solver == "adam" else "iteration"
    begun, ended = rec.tasks("MLPClassifier", "begin"), rec.tasks("MLPClassifier")
    assert sorted(begun) == sorted(ended) and begun[0] == ended[-1] == "fit"
    # lbfgs: scipy reports an iteration after it ran, leaving one empty task.
    extra = 0 if solver == "adam" else 1
    assert rec.tasks("MLPClassifier").count(steps) == est.n_iter_ + extra
    assert rec.events[0][0] == "setup" and rec.events[-1][0] == "teardown"


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs", "newton"])
def test_callback_can_stop_training(digits, solver, recwarn):
    X, y = digits
    est = MLPClassifier((10,), solver=solver, max_iter=50, random_state=0)
    est.set_callbacks(Recorder(stop_after=3)).fit(X, y)
    assert est.n_iter_ == 3
    # Stopped on request is not a failure to converge.
    assert not [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]
    # The stopped model is the 3-step model.
    ref = MLPClassifier((10,), solver=solver, max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_allclose(est.predict_proba(X), ref.predict_proba(X),
                               rtol=1e-10)


def test_partial_fit_is_one_epoch_task_and_metadata_passes(digits):
    X, y = digits
    rec = Recorder()
    est = MLPClassifier((10,), random_state=0).set_callbacks(rec)
    sw = np.linspace(0.5, 1.5, len(y))
    est.partial_fit(X, y, classes=np.unique(y), sample_weight=sw)
    est.partial_fit(X, y, sample_weight=sw)
    assert rec.tasks("MLPClassifier") == ["epoch", "fit"] * 2
    np.testing.assert_array_equal(rec.last_metadata["sample_weight"], sw)


def test_failed_fit_tears_down_and_keeps_model(digits):
    X, y = digits
    rec = Recorder(fail_after=2)
    est = MLPClassifier((10,), max_iter=3, random_state=0).fit(X, y)
    before = est.predict_proba(X)
    est.set_callbacks(rec).set_params(warm_start=True)
    with pytest.raises(RuntimeError, match="callback failed"):
        est.fit(X, y)
    assert rec.events[-1][0] == "teardown"
    assert not hasattr(est, "_callback_fit_ctx")
    np.testing.assert_array_equal(est.predict_proba(X), before)


def test_callbacks_propagate_from_grid_search_and_pipeline(digits):
    X, y = digits
    rec = Recorder()
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier((8,), max_iter=2, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2)
    search.set_callbacks(rec).fit(X, y)
    # 2 candidates x 2 folds + refit, each fit 2 epochs.
    assert rec.tasks("MLPClassifier").count("epoch") == 5 * 2
    assert rec.tasks("MLPClassifier").count("fit") == 5
    # Propagated callbacks are set up once, by the outermost estimator.
    assert [e for e in rec.events if e[0] == "setup"] == [
        ("setup", "GridSearchCV", None)
    ]


def test_progress_bar_runs_for_every_solver_and_regressor(capsys):
    pytest.importorskip("rich")
    X, y = make_regression(n_samples=60, n_features=4, random_state=0)
    for solver in ("adam", "lbfgs", "newton"):
        est = MLPRegressor(hidden_layer_sizes=(5,), solver=solver, max_iter=3, random_state=0)
        est.set_callbacks(ProgressBar()).fit(X, y)
        assert est.n_iter_ == 3
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    est.set_callbacks(ProgressBar()).partial_fit(X, y)
    assert "MLPRegressor" in capsys.readouterr().out


def test_callbacks_do_not_change_the_model(digits):
    X, y = digits
    plain = MLPClassifier((10,), max_iter=4, random_state=0).fit(X, y)
    watched = MLPClassifier((10,), max_iter=4, random_state=0)
    watched.set_callbacks(ScoringMonitor(scoring="accuracy")).fit(X, y)
    for a, b in zip(plain.coefs_ + plain.intercepts_,
                    watched.coefs_ + watched.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_scoring_monitor_sees_batch_norm_models(digits, solver):
    # The fitted estimator handed to callbacks carries the batch-norm scales,
    # shifts and running statistics: its last score is the final model's.
    X, y = digits
    monitor = ScoringMonitor(scoring="accuracy")
    est = MLPClassifier((15,), solver=solver, max_iter=5, random_state=0,
                        batch_norm=True).set_callbacks(monitor)
    est.fit(X, y)
    scores = _scores(monitor)
    assert len(scores) == 5
    assert scores[-1] == pytest.approx(est.score(X, y), abs=1e-12)
