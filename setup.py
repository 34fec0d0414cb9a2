"""Only here for the optional compiled codec; all metadata lives in pyproject.toml.

The extension is optional: where no C compiler is found the build carries on and
pybin runs on its pure-Python codec (same results, about a third of the speed).
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - build requirement normally present
    ext_modules = []
else:
    ext_modules = cythonize(
        [Extension("pybin._speedups", ["pybin/_speedups.pyx"], optional=True)],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )

setup(ext_modules=ext_modules)
