"""Only here for the optional compiled codec and the shipped folders; all metadata lives
in pyproject.toml.

The extension is optional: where no C compiler is found the build carries on and
pybin runs on its pure-Python codec (same results, about a third of the speed).

The project keeps its container recipes, config templates and SIPp scenarios in
top-level folders (``containers/``, ``opensips-cfg/``, ``scenarios/``), where a person
looks for them; the wheel carries them inside the package as ``harness/_shipped/``,
where ``harness.base.resources.shipped`` finds them. An editable install reads them
from the checkout instead.
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

SHIPPED = ("containers", "opensips-cfg", "scenarios")  # = harness.base.resources.SHIPPED


class BuildPyWithShippedFolders(build_py):
    """build_py, then the top-level shipped folders copied into harness/_shipped/."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # the checkout's folders are read where they are
            return
        here = Path(__file__).resolve().parent
        for name in SHIPPED:
            dest = Path(self.build_lib) / "harness" / "_shipped" / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(here / name, dest, ignore=shutil.ignore_patterns(".gitignore", "__pycache__"))


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

setup(ext_modules=ext_modules, cmdclass={"build_py": BuildPyWithShippedFolders})
