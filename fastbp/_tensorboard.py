"""Training curves to TensorBoard through scikit-learn's callbacks (optional
extra: ``tensorboard``, which brings tensorboardX)."""

import re
from pathlib import Path

# Tag written -> the fitted attribute holding one value per epoch (or per
# newton iteration). lbfgs keeps no per-iteration curve, as in scikit-learn.
CURVES = {
    "loss": "loss_curve_",
    "learning_rate": "learning_rate_curve_",
    "validation/loss": "validation_loss_curve_",
    "validation/score": "validation_scores_",
}


class TensorBoardLogger:
    """Write each epoch's loss, validation loss and score and learning rate to
    TensorBoard event files.

    A ``sklearn.callback`` callback: set it on a fastbp estimator with
    ``est.set_callbacks(TensorBoardLogger(log_dir))``, or on a meta-estimator
    (Pipeline, GridSearchCV) holding one, which passes it down. Every fit of
    a fastbp estimator is one TensorBoard run, in its own folder below
    ``log_dir``; the scalars are

    - ``loss``: ``loss_curve_``, the training loss of each epoch;
    - ``learning_rate``: ``learning_rate_curve_``, the step size each epoch used;
    - ``validation/loss`` and ``validation/score``: ``validation_loss_curve_``
      and ``validation_scores_`` (with ``early_stopping`` or ``X_val``).

    The step of a value is its epoch number counted as in those curves, so
    ``warm_start`` and ``partial_fit`` runs go on where the last one ended.
    Newton writes one value per iteration; lbfgs keeps no per-iteration
    curve (as in scikit-learn), so its runs are empty. View them with
    ``tensorboard --logdir LOG_DIR``.

    Parameters
    ----------
    log_dir : str or path-like
        Folder that receives one subfolder per fit.
    max_propagation_depth : int or None, default=None
        How many levels of nested meta-estimators pass the callback down;
        None: all of them.

    Attributes
    ----------
    run_dirs_ : list of pathlib.Path
        The folder of each run written by this process, in order.

    Examples
    --------
    >>> from fastbp import MLPClassifier, TensorBoardLogger  # doctest: +SKIP
    >>> clf = MLPClassifier(early_stopping=True).set_callbacks(  # doctest: +SKIP
    ...     TensorBoardLogger("runs"))
    >>> clf.fit(X, y)  # doctest: +SKIP
    """

    def __init__(self, log_dir, *, max_propagation_depth=None):
        _summary_writer()  # ImportError now rather than in the first fit
        self.log_dir = Path(log_dir)
        self.max_propagation_depth = max_propagation_depth
        self.run_dirs_ = []
        self._runs = {}  # id(fit context) -> [writer, {attribute: values written}]

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        # A fit that raised never ended its root task: close what it left.
        for writer, _ in self._runs.values():
            writer.close()
        self._runs.clear()

    def on_fit_task_begin(self, estimator, context, **kwargs):
        if not _is_fastbp(estimator) or context.task_name != "fit":
            return
        run_dir = self.log_dir / _run_name(context)
        writer = _summary_writer()(logdir=str(run_dir))
        self._runs[id(context)] = [writer, _curve_lengths(estimator)]
        self.run_dirs_.append(run_dir)

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        # The curves so far are the model's as fitted to the end of this task
        # (a fit commits its attributes to the estimator only at its end).
        if not _is_fastbp(estimator):
            return
        root = _fit_of(context)
        run = self._runs.get(id(root))
        if run is None:
            return
        writer, written = run
        for tag, step, value in _new_values(fitted_estimator, written):
            writer.add_scalar(tag, value, global_step=step)
        if root is context:  # the fit is over
            writer.close()
            del self._runs[id(root)]

    def __getstate__(self):
        # Writers stay in the process that opened them; a worker (n_jobs)
        # opens its own.
        return {**self.__dict__, "_runs": {}}


def _summary_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            "TensorBoardLogger needs tensorboardX: pip install 'fastbp[tensorboard]'"
        ) from exc
    return SummaryWriter


def _curve_lengths(estimator):
    """How many values each curve holds when a fit begins: they belong to
    earlier fits (warm_start, partial_fit), logged already."""
    return {attr: len(getattr(estimator, attr, None) or []) for attr in
            CURVES.values()}


def _fit_of(context):
    """The fit task a task belongs to (itself, or its parent: an epoch)."""
    return context if context.task_name == "fit" else context.parent


def _new_values(fitted_estimator, logged):
    """(tag, step, value) of every curve value past logged[attr], steps from
    1 as the curves count; logged moves on to the curves' ends. An empty
    task (lbfgs' last) has no model to read: nothing."""
    if fitted_estimator is None:
        return []
    new = []
    for tag, attr in CURVES.items():
        values = getattr(fitted_estimator, attr, None) or []
        new += [(tag, step + 1, float(values[step]))
                for step in range(logged[attr], len(values))]
        logged[attr] = len(values)
    return new


def _is_fastbp(estimator):
    from fastbp._mlp import MLPClassifier, MLPRegressor

    return isinstance(estimator, (MLPClassifier, MLPRegressor))


def _run_name(context):
    """``<outermost estimator>-<its start time>[/<task path down to this fit>]``:
    runs of one search sit side by side, named by candidate and split."""
    path = [context]
    while path[0].parent is not None:
        path.insert(0, path[0].parent)
    outer = path[0]
    name = Path(f"{outer.estimator_name}-{outer.init_time:%Y%m%d-%H%M%S-%f}")
    for ctx in path[1:]:
        name /= re.sub(r"[^\w.-]", "_", f"{ctx.estimator_name}.{ctx.task_name}"
                                          f"{ctx.task_id}")
    return name
