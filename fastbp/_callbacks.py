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

    def begin(self, model):
        """Open the next subtask, the model being the current ``model``."""
        self._open = self._root.subcontext(task_name=self._task_name)
        self._open.call_on_fit_task_begin(
            **self._hook_args, reconstruction_attributes=self._weights(model),
        )

    def end(self, model):
        """Close the open subtask; True when a callback asks to stop."""
        stop = self._open.call_on_fit_task_end(
            **self._hook_args, reconstruction_attributes=self._weights(model),
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

    def _weights(self, model):
        # Evaluated only if a callback asks for the fitted model; a copy,
        # because training goes on updating the model in place.
        def attributes():
            return {**self._fitted, **model.copy().attributes()}

        return attributes
