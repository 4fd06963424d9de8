"""Build hook: the CUDA sources of ``kernels/`` go into the package as ``rwkv_ts/kernels``.

Everything else about the package is in ``pyproject.toml``. In a source checkout (and an editable
install) ``rwkv_ts.ops._build`` compiles ``kernels/`` beside the package; an installed wheel has no
such folder, so the sources travel inside the package, where ``_build.kernel_dir`` looks next.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

KERNEL_SUFFIXES = {".cu", ".h", ".cpp"}


class BuildPyWithKernels(build_py):
    """``build_py`` that also copies ``kernels/*.cu|.h|.cpp`` to ``<build>/rwkv_ts/kernels``."""

    def run(self) -> None:
        super().run()
        src = Path(__file__).resolve().parent / "kernels"
        dst = Path(self.build_lib) / "rwkv_ts" / "kernels"
        dst.mkdir(parents=True, exist_ok=True)
        for path in sorted(src.iterdir()):
            if path.suffix in KERNEL_SUFFIXES:
                self.copy_file(str(path), str(dst / path.name))


setup(cmdclass={"build_py": BuildPyWithKernels})
