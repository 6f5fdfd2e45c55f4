"""Build the optional Cython extension ``corenet._ext`` (with OpenMP where the compiler has it).

The extension is optional: without Cython or a C compiler the package still installs and uses
the Numba backend; ``corenet.backend_status()`` then says why ``cython`` is unavailable.
"""

import glob
import os
import sys
import tempfile
import warnings

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _extensions():
    sources = sorted(glob.glob(os.path.join("corenet", "_ext", "*.pyx")))
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        warnings.warn("corenet: Cython is not installed; skipping the compiled backend (numba only)", stacklevel=1)
        return []
    from setuptools import Extension

    exts = [
        Extension(
            "corenet._ext." + os.path.splitext(os.path.basename(src))[0],
            [src],
            # the C kernels (simd_conv*.h) that a .pyx includes: rebuild when they change
            depends=sorted(glob.glob(os.path.join("corenet", "_ext", "*.h"))),
            # -fno-math-errno: sqrt/sqrtf become one (vectorisable) instruction; no kernel reads errno
            extra_compile_args=["-O3", "-fno-math-errno"] if sys.platform != "win32" else ["/O2"],
        )
        for src in sources
    ]
    directives = {
        "language_level": "3",
        "boundscheck": False,
        "wraparound": False,
        "cdivision": True,
        "initializedcheck": False,
    }
    return cythonize(exts, compiler_directives=directives, quiet=True)


class OptionalOpenMPBuildExt(build_ext):
    """Adds OpenMP flags when the compiler accepts them; never lets a failed build fail the install."""

    def _openmp_flags(self):
        flag = "/openmp" if self.compiler.compiler_type == "msvc" else "-fopenmp"
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "omp_probe.c")
            with open(src, "w") as f:
                f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
            try:
                objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=[flag])
                self.compiler.link_executable(objs, os.path.join(tmp, "omp_probe"), extra_postargs=[flag])
            except Exception:
                return None
        return flag

    def build_extensions(self):
        flag = self._openmp_flags()
        if flag is None:
            warnings.warn(
                "corenet: the C compiler does not support OpenMP; the Cython backend is built single-threaded",
                stacklevel=1,
            )
        for ext in self.extensions:
            if flag is not None:
                ext.extra_compile_args.append(flag)
                ext.extra_link_args.append(flag)
        super().build_extensions()

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler at all
            warnings.warn(f"corenet: could not build the Cython backend ({exc}); numba only", stacklevel=1)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            warnings.warn(f"corenet: building {ext.name} failed ({exc}); numba only", stacklevel=1)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalOpenMPBuildExt})
