"""Build the Cython extensions.

Set FASTBP_CYTHON_DEBUG=1 to build with bounds, wraparound and
initialisation checks on (and the FASTBP_DEBUG C macro, which turns on the
extra index checks written into the kernels). The tests run against both builds.
"""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTBP_CYTHON_DEBUG", "0") not in ("", "0")
MODULES = ["_blas", "_kernels", "_optimizers", "_epoch", "_curvature"]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
}
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]
if DEBUG:
    macros.append(("FASTBP_DEBUG", "1"))
    compile_args = ["-O1", "-g"]
else:
    # -fno-math-errno lets GCC vectorize loops that call sqrt (Adam's
    # update); results are unchanged, only errno is no longer set.
    compile_args = ["-O3", "-fno-math-errno"]

extensions = [
    Extension(
        f"fastbp.{name}",
        [f"fastbp/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    for name in MODULES
]

# force: the C files depend on the directives, which timestamps do not see,
# so switching between the debug and release builds must regenerate them.
setup(ext_modules=cythonize(extensions, compiler_directives=directives, force=True))
