"""Build the Cython kernels with CMake and bundle the osim-rl base models.

CMake cythonizes ``fastenv/_kernels.pyx`` and compiles it; the module is written
straight into the place setuptools expects, which also makes ``pip install -e .`` work.

The two base models (``gait9dof18musc``, ``gait14dof22musc``) and the bone meshes they
name come from the ``osim-rl`` distribution, a *build* requirement only: they are
copied into ``envs/models/`` (git-ignored) at build time and installed as package data
of ``fastenv.envs``, so osim-rl (and the legacy ``gym``, ``redis`` and
``timeout-decorator`` it pulls in) never enters a user's environment. Its Python
modules are never imported; the files are found through package metadata.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BASE_MODELS = ("gait9dof18musc.osim", "gait14dof22musc_20170320.osim")
MODELS_DIR = ROOT / "envs" / "models"
MESH_DIR = MODELS_DIR / "meshes"   # not "Geometry": OpenSim would parse them on every load
MESH_TAG = r"<(?:geometry|mesh)_file>\s*([^<\s]+)\s*</(?:geometry|mesh)_file>"


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


def bundle_base_models():
    """Copy the base models and the meshes they reference out of osim-rl."""
    from importlib import metadata
    try:
        source = Path(metadata.distribution("osim-rl").locate_file("osim/models"))
    except metadata.PackageNotFoundError as exc:
        if all((MODELS_DIR / name).is_file() for name in BASE_MODELS):
            return   # bundled by an earlier build (e.g. --no-build-isolation without osim-rl)
        raise SystemExit("building fastenv needs the osim-rl distribution for its base "
                         "models: pip install osim-rl (a build requirement)") from exc
    MESH_DIR.mkdir(parents=True, exist_ok=True)
    for name in BASE_MODELS:
        shutil.copyfile(source / name, MODELS_DIR / name)
        text = (source / name).read_text()
        for mesh in sorted(set(re.findall(MESH_TAG, text))):
            shutil.copyfile(source / "Geometry" / mesh, MESH_DIR / mesh)


class BuildPy(build_py):
    def run(self):
        bundle_base_models()
        super().run()


setup(
    packages=find_packages(include=["fastenv", "fastenv.*"])
    + ["fastenv.envs" + ("." + p if p else "") for p in [""] + find_packages("envs")],
    package_dir={"fastenv.envs": "envs"},
    package_data={"fastenv.envs": ["references/*.npz", "references/*.json", "references/*.sto",
                                   "models/*.osim", "models/meshes/*.vtp"],
                  "fastenv.configs": ["*.toml"]},
    ext_modules=[CMakeExtension("fastenv._kernels")],
    cmdclass={"build_ext": CMakeBuild, "build_py": BuildPy},
    zip_safe=False,
)
