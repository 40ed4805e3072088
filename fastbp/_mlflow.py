"""Training curves and parameters to MLflow through scikit-learn's callbacks
(optional extra: ``mlflow``)."""

import time

from fastbp._tensorboard import (
    _curve_lengths, _fit_of, _is_fastbp, _new_values, _run_name,
)

# MLflow's limits on one log_batch call.
_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_LENGTH = 6000
_PARENT_TAG = "mlflow.parentRunId"


class MLflowLogger:
    """Log each fit's parameters and, epoch by epoch, its loss, learning rate,
    validation loss and score to MLflow.

    A ``sklearn.callback`` callback, the MLflow twin of
    :class:`fastbp.TensorBoardLogger`: set it on a fastbp estimator with
    ``est.set_callbacks(MLflowLogger())``, or on a meta-estimator (Pipeline,
    GridSearchCV) holding one, which passes it down. Every fit of a fastbp
    estimator is one MLflow run, holding

    - the estimator's parameters (``get_params(deep=False)``, as strings);
    - the metrics ``loss`` (``loss_curve_``), ``learning_rate``
      (``learning_rate_curve_``) and, with ``early_stopping`` or ``X_val``,
      ``validation/loss`` and ``validation/score`` (``validation_loss_curve_``,
      ``validation_scores_``), with the epoch as the metric's step.

    Steps count epochs as those curves do (from 1), so ``warm_start`` and
    ``partial_fit`` runs go on where the last one ended. Newton logs one value
    per iteration; lbfgs keeps no per-iteration curve (as in scikit-learn), so
    its runs hold parameters only.

    Set on a meta-estimator, the logger opens one parent run for that
    estimator's fit and a nested run (tag ``mlflow.parentRunId``) for each fit
    of a fastbp estimator inside it, named by candidate and split, the refit
    last. Inside an active MLflow run (``with mlflow.start_run():``) the
    logger's runs are nested under it. Searches with ``n_jobs`` in worker
    processes log from the workers, into the same parent run.

    Parameters
    ----------
    tracking_uri : str or None, default=None
        Where to log: a database URI (``sqlite:///mlflow.db``) or a tracking
        server (``http://host:5000``). None: MLflow's current tracking URI
        (``mlflow.set_tracking_uri``, ``MLFLOW_TRACKING_URI``, or MLflow's
        default SQLite database) as each fit starts; worker processes of a
        search log where the fit that started them does.
    experiment_name : str or None, default=None
        The experiment receiving the runs, made if it does not exist. None:
        MLflow's active experiment (``mlflow.set_experiment``,
        ``MLFLOW_EXPERIMENT_NAME``), else the default one.
    log_params : bool, default=True
        Log the estimator's parameters in each run.
    max_propagation_depth : int or None, default=None
        How many levels of nested meta-estimators pass the callback down;
        None: all of them.

    Attributes
    ----------
    run_ids_ : list of str
        The ID of each run this logger made in this process, in order (the
        parent run of a meta-estimator first, then its nested runs).

    Examples
    --------
    >>> import mlflow  # doctest: +SKIP
    >>> from fastbp import MLPClassifier, MLflowLogger  # doctest: +SKIP
    >>> clf = MLPClassifier(early_stopping=True).set_callbacks(  # doctest: +SKIP
    ...     MLflowLogger(experiment_name="digits"))
    >>> clf.fit(X, y)  # doctest: +SKIP
    >>> mlflow.MlflowClient().get_metric_history(  # doctest: +SKIP
    ...     clf._skl_callbacks[0].run_ids_[0], "loss")
    """

    def __init__(self, *, tracking_uri=None, experiment_name=None, log_params=True,
                 max_propagation_depth=None):
        _mlflow()  # ImportError now rather than in the first fit
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.log_params = log_params
        self.max_propagation_depth = max_propagation_depth
        self.run_ids_ = []
        self._experiment_id = None
        self._outer_run_id = None  # a user's active run, or a meta-estimator's
        self._meta_run_id = None  # the run this logger opened for a meta-estimator
        self._uri = None  # the tracking URI of the current fit
        self._client_ = None
        self._runs = {}  # id(fit context) -> [run id, {attribute: values logged}]

    # -- the callback's hooks ------------------------------------------------

    def setup(self, estimator, context):
        # Called once, in the calling process, for the outermost estimator:
        # the parent runs are made here so worker processes inherit their IDs.
        mlflow = _mlflow()
        uri = self.tracking_uri or mlflow.get_tracking_uri()
        if uri != self._uri:
            self._uri, self._client_ = uri, None
        active = mlflow.active_run()
        self._outer_run_id = None if active is None else active.info.run_id
        self._experiment_id = self._experiment(active)
        self._meta_run_id = None
        if not _is_fastbp(estimator):
            self._meta_run_id = self._create_run(
                _run_name(context).as_posix(), self._outer_run_id)
            self._outer_run_id = self._meta_run_id

    def teardown(self, estimator, context):
        # A fit that raised never ended its root task: mark what it left.
        for run_id, _ in self._runs.values():
            self._client().set_terminated(run_id, status="FAILED")
        self._runs.clear()
        if self._meta_run_id is not None:
            self._client().set_terminated(self._meta_run_id)
            self._meta_run_id = None

    def on_fit_task_begin(self, estimator, context, **kwargs):
        if not _is_fastbp(estimator) or context.task_name != "fit":
            return
        name = _run_name(context)
        if context.parent is not None:  # named by its place in the meta-estimator
            name = name.relative_to(name.parts[0])
        run_id = self._create_run(name.as_posix(), self._outer_run_id)
        if self.log_params:
            self._log_params(run_id, estimator.get_params(deep=False))
        self._runs[id(context)] = [run_id, _curve_lengths(estimator)]

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if not _is_fastbp(estimator):
            return
        root = _fit_of(context)
        run = self._runs.get(id(root))
        if run is None:
            return
        run_id, logged = run
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, step)
                   for tag, step, value in _new_values(fitted_estimator, logged)]
        if metrics:
            self._client().log_batch(run_id, metrics=metrics)
        if root is context:  # the fit is over
            self._client().set_terminated(run_id)
            del self._runs[id(root)]

    # -- MLflow ----------------------------------------------------------------

    def _client(self):
        if self._uri is None:  # a fit that never went through setup
            self._uri = self.tracking_uri or _mlflow().get_tracking_uri()
        if self._client_ is None:
            self._client_ = _mlflow().MlflowClient(self._uri)
        return self._client_

    def _experiment(self, active_run):
        client = self._client()
        if self.experiment_name is None:
            if active_run is not None:
                return active_run.info.experiment_id
            # The experiment mlflow.start_run would use, if this logger's
            # store has it (mlflow.set_experiment may have named another
            # store's); else MLflow's default experiment.
            from mlflow.exceptions import MlflowException

            try:  # a private helper of MLflow's: tolerate its absence
                from mlflow.tracking.fluent import _get_experiment_id

                return client.get_experiment(_get_experiment_id()).experiment_id
            except (ImportError, MlflowException):
                return client.get_experiment_by_name("Default").experiment_id
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(self.experiment_name)

    def _create_run(self, name, parent_run_id):
        if self._experiment_id is None:  # a fit that never went through setup
            self._experiment_id = self._experiment(None)
        tags = {} if parent_run_id is None else {_PARENT_TAG: parent_run_id}
        run = self._client().create_run(self._experiment_id, run_name=name,
                                        tags=tags)
        self.run_ids_.append(run.info.run_id)
        return run.info.run_id

    def _log_params(self, run_id, params):
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in sorted(params.items())]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self._client().log_batch(run_id, params=items[i:i + _MAX_PARAMS_PER_BATCH])

    def __getstate__(self):
        # The client and the open runs stay in the process that made them; a
        # worker (n_jobs) opens its own client and logs into the same parent.
        return {**self.__dict__, "_client_": None, "_runs": {}}


def _mlflow():
    try:
        import mlflow
    except ImportError as exc:
        raise ImportError(
            "MLflowLogger needs mlflow: pip install 'fastbp[mlflow]'"
        ) from exc
    return mlflow
