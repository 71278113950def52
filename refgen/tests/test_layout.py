"""refgen stays out of the installed package, and its folders are set in one place."""
import ast
from pathlib import Path

import pytest

import fastenv
from refgen import CHECKOUT, MOTIONS_ENV, REFERENCES_DIR, motion_file, motions_dir


def test_fastenv_never_imports_refgen():
    package = Path(fastenv.__file__).resolve().parent
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "refgen" or n.startswith("refgen.") for n in names):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not offenders


def test_folders(monkeypatch, tmp_path):
    assert REFERENCES_DIR == CHECKOUT / "envs" / "references"
    monkeypatch.setenv(MOTIONS_ENV, str(tmp_path))
    assert motions_dir() == tmp_path
    (tmp_path / "walk.mot").write_text("x")
    assert motion_file("walk.mot") == tmp_path / "walk.mot"
    assert motion_file("absent.mot", motion=tmp_path / "walk.mot") == tmp_path / "walk.mot"
    with pytest.raises(FileNotFoundError, match="--motions") as info:
        motion_file("absent.mot")
    assert str(tmp_path) in str(info.value)
