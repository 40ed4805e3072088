"""The task tree that scikit-learn's callbacks (``sklearn.callback``) see.

A fit is a root task with one subtask per epoch (stochastic solvers) or per
iteration (lbfgs), so ``ProgressBar`` shows a bar per epoch and
``ScoringMonitor`` can score the model as it was at the end of each one.
Meta-estimators (Pipeline, GridSearchCV) propagate their callbacks into ours
through the same root context.
"""

from fastbp._network import fitted_arrays


class FitTasks:
    """Root context of one fit plus the currently open subtask."""

    def __init__(self, estimator, X, y, sample_weight, max_subtasks, task_name):
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

    def begin(self, flat, units, running=None):
        """Open the next subtask, the model being the current ``flat`` (and
        batch-norm ``running`` statistics)."""
        self._open = self._root.subcontext(task_name=self._task_name)
        self._open.call_on_fit_task_begin(
            **self._hook_args,
            reconstruction_attributes=_weights(flat, units, running),
        )

    def end(self, flat, units, running=None):
        """Close the open subtask; True when a callback asks to stop."""
        stop = self._open.call_on_fit_task_end(
            **self._hook_args,
            reconstruction_attributes=_weights(flat, units, running),
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


def _weights(flat, units, running):
    # Evaluated only if a callback asks for the fitted model; copies, because
    # training goes on updating flat in place.
    def attributes():
        return fitted_arrays(flat.copy(), units,
                             None if running is None else running.copy())

    return attributes
