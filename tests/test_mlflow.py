"""MLflowLogger and mlflow.sklearn: runs logged into a real SQLite tracking
store, read back with mlflow.MlflowClient."""

import pickle
import shutil
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import FailAfter
from fastbp import MLflowLogger, MLPClassifier, MLPRegressor

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # MLflow's own deprecation and future warnings are not fastbp's.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


def _empty_store(path):
    """An empty SQLite tracking store at path, as MLflow makes one (its tables
    and schema migrations: 5-10 s)."""
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()


@pytest.fixture(scope="module")
def database(tmp_path_factory, request):
    """One SQLite tracking store for the module (making one takes seconds);
    the tests tell their runs apart by ID. Under pytest-xdist the workers
    copy one empty store made by the first of them (the session's shared
    temporary folder, a file lock), rather than each making its own."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    filelock = None
    if hasattr(request.config, "workerinput"):  # an xdist worker
        try:
            import filelock
        except ImportError:
            pass
    if filelock is None:
        return f"sqlite:///{path}"
    empty = tmp_path_factory.getbasetemp().parent / "mlflow-empty.db"
    with filelock.FileLock(f"{empty}.lock"):
        if not empty.exists():
            _empty_store(empty.with_suffix(".part"))
            empty.with_suffix(".part").rename(empty)
    shutil.copyfile(empty, path)
    return f"sqlite:///{path}"


@pytest.fixture
def store(database):
    """The SQLite store, also MLflow's current tracking URI for the test (the
    fluent API, mlflow.sklearn)."""
    uri = database
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


def _history(client, run_id, key):
    """(steps, values) of a metric as the store holds it."""
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return (np.array([m.step for m in history]),
            np.array([m.value for m in history]))


def _assert_curve(client, run_id, key, curve, first_step=1):
    steps, values = _history(client, run_id, key)
    np.testing.assert_array_equal(steps, np.arange(first_step, first_step + len(curve)))
    np.testing.assert_array_equal(values, curve)  # stored as doubles


def test_parameters_and_epoch_curves_are_logged(store, digits):
    logger = MLflowLogger(tracking_uri=store, experiment_name="digits")
    clf = MLPClassifier((12,), solver="sgd", learning_rate="invscaling",
                        learning_rate_init=0.1, early_stopping=True, max_iter=7,
                        n_iter_no_change=50, random_state=0)
    clf.set_callbacks(logger).fit(*digits)
    client = mlflow.MlflowClient(store)
    (run_id,) = logger.run_ids_
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "digits"
    assert run.info.run_name.startswith("MLPClassifier-")
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.data.params == {k: str(v) for k, v in clf.get_params().items()}
    assert sorted(run.data.metrics) == ["learning_rate", "loss", "validation/loss",
                                        "validation/score"]
    _assert_curve(client, run_id, "loss", clf.loss_curve_)
    _assert_curve(client, run_id, "learning_rate", clf.learning_rate_curve_)
    _assert_curve(client, run_id, "validation/loss", clf.validation_loss_curve_)
    _assert_curve(client, run_id, "validation/score", clf.validation_scores_)
    assert len(clf.loss_curve_) == 7 and len(set(clf.learning_rate_curve_)) == 7


def test_one_run_per_fit_and_warm_start_continues_the_steps(store, digits):
    logger = MLflowLogger(tracking_uri=store, log_params=False)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=4, warm_start=True,
                       random_state=0).set_callbacks(logger)
    X, y = digits
    reg.fit(X, y)
    reg.fit(X, y)
    client = mlflow.MlflowClient(store)
    first, second = logger.run_ids_
    _assert_curve(client, first, "loss", reg.loss_curve_[:4])
    _assert_curve(client, second, "loss", reg.loss_curve_[4:], first_step=5)
    assert "validation/loss" not in client.get_run(second).data.metrics
    assert client.get_run(first).data.params == {}
    # No experiment named: MLflow's default one.
    assert client.get_run(first).info.experiment_id == "0"


def test_newton_logs_each_iteration_and_lbfgs_parameters_only(store, digits):
    X, y = digits
    logger = MLflowLogger(tracking_uri=store)
    newton = MLPClassifier((4,), solver="newton", max_iter=5, random_state=0)
    newton.set_callbacks(logger).fit(X, y % 2)
    lbfgs = MLPClassifier((4,), solver="lbfgs", max_iter=5, random_state=0)
    lbfgs.set_callbacks(logger).fit(X, y % 2)
    client = mlflow.MlflowClient(store)
    newton_run, lbfgs_run = (client.get_run(r) for r in logger.run_ids_)
    _assert_curve(client, newton_run.info.run_id, "loss", newton.loss_curve_)
    assert lbfgs_run.data.metrics == {}  # no per-iteration curve, as in sklearn
    assert lbfgs_run.data.params["solver"] == "lbfgs"
    assert lbfgs_run.info.status == "FINISHED"


def _children(client, parent_id):
    runs = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return sorted(runs, key=lambda r: r.info.start_time)


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_nested_runs_inside_a_search(store, digits, n_jobs):
    """One parent run for the search, a nested one per candidate and split
    and the refit, also when the fits run in worker processes."""
    logger = MLflowLogger(tracking_uri=store)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((6,), max_iter=3))
    alphas = [1e-4, 1e-2]
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": alphas}, cv=2, n_jobs=n_jobs)
    search.set_callbacks(logger).fit(*digits)
    client = mlflow.MlflowClient(store)
    parent_id = logger.run_ids_[0]
    parent = client.get_run(parent_id)
    assert parent.info.run_name.startswith("GridSearchCV-")
    assert parent.info.status == "FINISHED"
    children = _children(client, parent_id)
    assert len(children) == 2 * 2 + 1
    assert len({c.info.run_name for c in children}) == 5
    assert all(c.info.status == "FINISHED" for c in children)
    # Each candidate's alpha, once per split; the refit is the best one.
    fitted_alphas = [float(c.data.params["alpha"]) for c in children]
    assert sorted(fitted_alphas[:4]) == sorted(alphas * 2)
    assert fitted_alphas[4] == search.best_params_["mlpclassifier__alpha"]
    for child in children:
        steps, _ = _history(client, child.info.run_id, "loss")
        np.testing.assert_array_equal(steps, [1, 2, 3])
    refit = max(children, key=lambda c: c.info.start_time)
    _assert_curve(client, refit.info.run_id, "loss",
                  search.best_estimator_[-1].loss_curve_)
    if n_jobs is None:  # in this process: every run in run_ids_
        assert logger.run_ids_[1:] == [c.info.run_id for c in children]


def test_runs_nest_under_an_active_run(store, digits):
    logger = MLflowLogger()  # the current tracking URI: the store
    with mlflow.start_run(run_name="outer") as outer:
        MLPClassifier((4,), max_iter=2).set_callbacks(logger).fit(*digits)
    client = mlflow.MlflowClient(store)
    (run_id,) = logger.run_ids_
    assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == outer.info.run_id
    assert logger.tracking_uri is None  # a parameter stays as it was given


def test_the_tracking_uri_is_read_as_the_fit_starts(store, digits):
    mlflow.set_tracking_uri("sqlite:////nonexistent/folder/mlflow.db")
    logger = MLflowLogger()  # made while another URI is current
    mlflow.set_tracking_uri(store)
    MLPClassifier((4,), max_iter=2).set_callbacks(logger).fit(*digits)
    (run_id,) = logger.run_ids_
    steps, _ = _history(mlflow.MlflowClient(store), run_id, "loss")
    np.testing.assert_array_equal(steps, [1, 2])


def test_a_failing_fit_marks_its_run_failed(store, digits):
    logger = MLflowLogger(tracking_uri=store)
    clf = MLPClassifier((6,), max_iter=5).set_callbacks(logger, FailAfter())
    with pytest.raises(RuntimeError, match="callback failed"):
        clf.fit(*digits)
    assert logger._runs == {}
    client = mlflow.MlflowClient(store)
    (run_id,) = logger.run_ids_
    assert client.get_run(run_id).info.status == "FAILED"
    steps, _ = _history(client, run_id, "loss")
    np.testing.assert_array_equal(steps, [1, 2])  # logged before the failure


REQUIREMENTS = ["fastbp", "scikit-learn", "skops"]


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_log_model_round_trip_with_skops(store, digits, tmp_path, Estimator):
    """mlflow.sklearn saves with skops; fastbp's estimator class is the one
    type to trust."""
    X, y = digits
    est = Estimator(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    trusted = f"fastbp._mlp.{Estimator.__name__}"
    # Artifacts in tmp_path too (a SQLite store's default root is ./mlruns).
    models = mlflow.create_experiment(
        f"models-{Estimator.__name__}",
        artifact_location=(tmp_path / "artifacts").as_uri())
    # The requirements are given, as a user pinning them would: otherwise
    # MLflow infers them by loading the model in a child process that
    # imports MLflow, scikit-learn and fastbp anew (~12 s of this test's
    # ~13 s), a guess it only logs and that nothing here reads.
    with mlflow.start_run(experiment_id=models):
        info = mlflow.sklearn.log_model(
            est, name="model", serialization_format="skops",
            skops_trusted_types=[trusted], pip_requirements=REQUIREMENTS)
    loaded = mlflow.sklearn.load_model(info.model_uri)
    assert type(loaded) is Estimator
    outputs = "predict_proba" if Estimator is MLPClassifier else "predict"
    np.testing.assert_array_equal(getattr(loaded, outputs)(X), getattr(est, outputs)(X))
    # Without it, MLflow refuses to save (it loads back what it saved).
    with mlflow.start_run(experiment_id=models), pytest.raises(
            mlflow.exceptions.MlflowException,
            match=rf"untrusted types.*\['{trusted}'\]"):
        mlflow.sklearn.log_model(est, name="model", serialization_format="skops",
                                 pip_requirements=REQUIREMENTS)


def test_pickles_without_its_client(store):
    logger = MLflowLogger(tracking_uri=store)
    logger._client()
    logger._runs[0] = ["a run", {}]
    clone = pickle.loads(pickle.dumps(logger))
    assert clone._runs == {} and clone._client_ is None
    assert clone.tracking_uri == clone._uri == store


def test_needs_mlflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match=r"fastbp\[mlflow\]"):
        MLflowLogger()
