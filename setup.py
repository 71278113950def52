"""Build the Cython kernels with CMake; everything else is plain setuptools.

CMake cythonizes ``fastenv/_kernels.pyx`` and compiles it; the module is written
straight into the place setuptools expects, which also makes ``pip install -e .`` work.
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = "Debug" if self.debug else "Release"
        subprocess.run(
            ["cmake", "-S", str(ROOT), "-B", str(build_dir),
             f"-DPython_EXECUTABLE={sys.executable}",
             f"-DCMAKE_BUILD_TYPE={cfg}",
             f"-DFASTENV_OUTPUT_DIR={out_dir}"],
            check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--config", cfg,
                        "-j", str(os.cpu_count() or 1)], check=True)


setup(
    packages=["fastenv", "fastenv.sim", "fastenv.references", "fastenv.envs"],
    package_dir={"fastenv.envs": "envs"},
    package_data={"fastenv.envs": ["references/*.npz", "references/*.json", "references/*.sto"]},
    ext_modules=[CMakeExtension("fastenv._kernels")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
