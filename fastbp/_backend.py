"""The engine a fit runs on: the compiled modules or their NumPy twin.

A backend is one object with the engine's operations as methods, chosen in
one place (``BACKENDS[name]``); callers never ask which module holds what.
Each method looks its function up in the module at call time, so a test can
still replace one of them (``monkeypatch.setattr(_epoch, "loss_grad", f)``).
"""

import numpy as np

import fastbp._curvature as _curvature
import fastbp._epoch as _epoch
import fastbp._kernels as _kernels
import fastbp._reference as _reference
from fastbp._forward import forward
from fastbp._inputs import as_kernel_input


class Backend:
    """The compiled engine (epoch, kernels, curvature) or the NumPy twin.

    ``reuses_work``: a Hessian-vector product may reuse the forward and
    backward passes the last one-thread ``loss_grad`` left in the workspace
    (the compiled engine; the twin recomputes them).
    """

    def __init__(self, name, epoch, kernels, curvature, reuses_work):
        self.name, self.reuses_work = name, reuses_work
        self._epoch, self._kernels, self._curvature = epoch, kernels, curvature

    def __repr__(self):
        return f"Backend({self.name!r})"

    def run_epoch(self, *args, **kwargs):
        return self._epoch.run_epoch(*args, **kwargs)

    def loss_grad(self, *args):
        return self._epoch.loss_grad(*args)

    def forward(self, *args):
        return self._epoch.forward(*args)

    def forward_pass(self, plan, flat, running):
        """X -> forward's output for dense X on one thread, bound to the plan
        and the weights (small predicts: see _epoch.Pass)."""
        return self._epoch.Pass(plan, flat, running)

    def all_finite(self, a):
        return self._epoch.all_finite(a)

    def loss_delta(self, *args):
        return self._kernels.loss_delta(*args)

    def hessian_vector_product(self, *args):
        return self._curvature.hessian_vector_product(*args)

    def jacobian(self, *args):
        return self._curvature.jacobian(*args)

    # What the stochastic driver asks of any engine, this one's or the
    # array-API Engine's (fastbp._array_api), about its arrays.

    def kernel_input(self, X, dtype):
        return as_kernel_input(X, dtype)

    def buffers(self, plan, flat):
        """The workspace and gradient buffer of a fit's epochs."""
        return self.workspace(plan, flat.dtype), np.empty_like(flat)

    def workspace(self, plan, dtype):
        return np.empty(plan.work_size, dtype=dtype)

    def targets(self, Y, dtype):
        return np.ascontiguousarray(Y, dtype=dtype)

    def host(self, a):
        return a

    def host_dtype(self, flat):
        return flat.dtype

    def validation_output(self, X, model, plan_for, n_jobs):
        return forward(X, model, plan_for, self, n_jobs)


BACKENDS = {
    "cython": Backend("cython", _epoch, _kernels, _curvature, reuses_work=True),
    "numpy": Backend("numpy", _reference, _reference, _reference,
                     reuses_work=False),
}
