"""Build the Cython extensions.

Set FASTBP_CYTHON_DEBUG=1 to build with bounds, wraparound and
initialisation checks on (and the FASTBP_DEBUG C macro, which turns on the
extra index checks written into the kernels). The tests run against both builds.

fastbp's threads are its own pool (fastbp/_pool.h: POSIX threads, or
Windows threads), so no OpenMP runtime is needed or linked.
"""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTBP_CYTHON_DEBUG", "0") not in ("", "0")
MODULES = ["_pool", "_blas", "_kernels", "_optimizers", "_epoch", "_curvature",
           "_snapshot"]

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

# Per compiler family: (compile, link) flags.
FLAGS = {
    # -fno-math-errno lets GCC vectorize loops that call sqrt (Adam's
    # update); results are unchanged, only errno is no longer set.
    "unix": ((["-O1", "-g"] if DEBUG else ["-O3", "-fno-math-errno"]) + ["-pthread"],
             ["-pthread"]),
    # MSVC: /fp:precise (its default) keeps IEEE semantics like GCC without
    # -ffast-math.
    "msvc": (["/Od", "/Zi"] if DEBUG else ["/O2"], []),
}


class BuildExt(build_ext):
    """Cythonizes the modules, adds the compiler's flags; compiles in
    parallel on every core unless told (-j N).

    Cythonizing when the modules are built rather than when setup.py is
    read: pip and build read it several times a build (metadata,
    requirements, the sdist), and each read regenerated all the C files,
    10-20 s each on 2 cores. The sdist ships the .pyx sources only.
    """

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self):
        # force: the C files depend on the directives, which timestamps do
        # not see, so switching between the debug and release builds must
        # regenerate them.
        made = cythonize(self.extensions, compiler_directives=directives,
                         force=True, nthreads=os.cpu_count() or 1)
        for ext, c in zip(self.extensions, made):
            ext.sources = c.sources
        super().run()

    def build_extensions(self):
        kind = "msvc" if self.compiler.compiler_type == "msvc" else "unix"
        compile_args, link_args = FLAGS[kind]
        for ext in self.extensions:
            ext.extra_compile_args = list(compile_args)
            ext.extra_link_args = list(link_args)
        super().build_extensions()


extensions = [
    Extension(
        f"fastbp.{name}",
        [f"fastbp/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=macros,
    )
    for name in MODULES
]

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
