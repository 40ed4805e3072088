"""The task tree that scikit-learn's callbacks (``sklearn.callback``) see.

A fit is a root task with one subtask per epoch (stochastic solvers) or per
iteration (lbfgs), so ``ProgressBar`` shows a bar per epoch and
``ScoringMonitor`` can score the model as it was at the end of each one.
Meta-estimators (Pipeline, GridSearchCV) propagate their callbacks into ours
through the same root context.
"""


class FitTasks:
    """Root context of one fit plus the currently open subtask."""

    def __init__(self, estimator, X, y, sample_weight, max_subtasks, task_name,
                 fitted=None):
        # fitted: the attributes beside the weights that a model of this fit
        # has (labels, widths), for the models callbacks reconstruct.
        self._fitted = fitted or {}
        self._hook_args = dict(
            estimator=estimator,
            X=X,
            y=y,
            metadata=None if sample_weight is None else {"sample_weight": sample_weight},
        )
        self._task_name = task_name
        self._root = estimator._init_callback_context(max_subtasks=max_subtasks)
        self._root.call_on_fit_task_begin(**self._hook_args)
        self._open = None

    def begin(self, model, history):
        """Open the next subtask, the model being the current ``model``
        trained so far as ``history`` records."""
        self._open = self._root.subcontext(task_name=self._task_name)
        self._open.call_on_fit_task_begin(
            **self._hook_args,
            reconstruction_attributes=self._fitted_so_far(model, history),
        )

    def end(self, model, history):
        """Close the open subtask; True when a callback asks to stop."""
        stop = self._open.call_on_fit_task_end(
            **self._hook_args,
            reconstruction_attributes=self._fitted_so_far(model, history),
        )
        self._open = None
        return stop

    def close_empty(self):
        """Close a subtask that was opened but never ran (lbfgs' last one)."""
        if self._open is not None:
            self._open.call_on_fit_task_end(estimator=self._hook_args["estimator"])
            self._open = None

    def finish(self):
        """End the root task; the estimator itself is the fitted model."""
        self._root.call_on_fit_task_end(**self._hook_args, reconstruction_attributes={})

    def _fitted_so_far(self, model, history):
        # Evaluated only if a callback asks for the fitted model (sklearn's
        # fitted_estimator); copies, because training goes on updating the
        # model and the history in place.
        def attributes():
            curves = {k: list(v) if isinstance(v, list) else v
                      for k, v in history.attributes().items()}
            return {**self._fitted, **curves, **model.copy().attributes()}

        return attributes
