"""Build the Cython extensions.

Set FASTBP_CYTHON_DEBUG=1 to build with bounds, wraparound and
initialisation checks on (and the FASTBP_DEBUG C macro, which turns on the
extra index checks written into the kernels). The tests run against both builds.

OpenMP (fastbp's threads over the rows of a step or of a predict) is used
when the compiler accepts it: -fopenmp for GCC and Clang, /openmp for MSVC.
Apple's clang needs libomp (``brew install libomp``; the flags come from
CPPFLAGS/LDFLAGS such as ``-Xpreprocessor -fopenmp -lomp``). Without it the
build is plain and fastbp runs on one thread. FASTBP_OPENMP=0 forces the
plain build.
"""

import os
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTBP_CYTHON_DEBUG", "0") not in ("", "0")
WANT_OPENMP = os.environ.get("FASTBP_OPENMP", "1") not in ("", "0")
MODULES = ["_blas", "_kernels", "_optimizers", "_epoch", "_curvature"]
# The modules that run threads (cython.parallel).
OPENMP_MODULES = {"_epoch"}

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

# Per compiler family: (optimization, OpenMP compile, OpenMP link).
FLAGS = {
    # -fno-math-errno lets GCC vectorize loops that call sqrt (Adam's
    # update); results are unchanged, only errno is no longer set.
    "unix": (["-O1", "-g"] if DEBUG else ["-O3", "-fno-math-errno"],
             ["-fopenmp"], ["-fopenmp"]),
    # MSVC: /fp:precise (its default) keeps IEEE semantics like GCC without
    # -ffast-math; OpenMP 2.0 is all cython.parallel needs.
    "msvc": (["/Od", "/Zi"] if DEBUG else ["/O2"], ["/openmp"], []),
}


def _compiles(compiler, args, link_args):
    """Whether compiler builds and links a program calling OpenMP with args."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) "
                    "{ return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=args)
            compiler.link_executable(objects, os.path.join(tmp, "omp"),
                                     extra_postargs=link_args)
        except Exception:  # CompileError, LinkError: no OpenMP here
            return False
    return True


class BuildExt(build_ext):
    """Adds the compiler's flags; OpenMP only where it compiles and links.
    Compiles the modules in parallel on every core unless told (-j N)."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        kind = "msvc" if self.compiler.compiler_type == "msvc" else "unix"
        opt, omp_compile, omp_link = FLAGS[kind]
        if sys.platform == "darwin":
            # Apple's clang rejects -fopenmp: libomp's flags come from
            # CPPFLAGS/LDFLAGS, which the compiler already gets.
            omp_compile, omp_link = [], []
        openmp = WANT_OPENMP and _compiles(self.compiler, omp_compile, omp_link)
        if WANT_OPENMP and not openmp:
            print("fastbp: the compiler has no OpenMP; building for one thread",
                  file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args = list(opt)
            if openmp and ext.name.rsplit(".", 1)[-1] in OPENMP_MODULES:
                ext.extra_compile_args += omp_compile
                ext.extra_link_args = list(omp_link)
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

# force: the C files depend on the directives, which timestamps do not see,
# so switching between the debug and release builds must regenerate them.
setup(
    ext_modules=cythonize(extensions, compiler_directives=directives, force=True,
                          nthreads=os.cpu_count() or 1),
    cmdclass={"build_ext": BuildExt},
)
