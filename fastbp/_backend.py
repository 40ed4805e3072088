"""The engine a fit runs on: the compiled modules or their NumPy twin.

A backend is one record, chosen in one place (``BACKENDS[estimator.backend]``):
``epoch`` runs epochs, full-batch passes and forward passes, ``kernels`` has
the loss, ``curvature`` the Hessian-vector products and Jacobians. Modules,
not functions, are kept, so a test can replace one of their functions.
"""

from dataclasses import dataclass
from types import ModuleType

from fastbp import _curvature, _epoch, _kernels, _reference


@dataclass(frozen=True)
class Backend:
    name: str
    epoch: ModuleType
    kernels: ModuleType
    curvature: ModuleType
    # True when a Hessian-vector product may reuse the forward and backward
    # passes the last loss_grad left in the workspace (the compiled engine).
    reuses_work: bool


BACKENDS = {
    "cython": Backend("cython", _epoch, _kernels, _curvature, reuses_work=True),
    "numpy": Backend("numpy", _reference, _reference, _reference,
                     reuses_work=False),
}
