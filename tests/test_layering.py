"""The runtime reads top-down: a module imports only modules of its own layer or below
(docs/architecture.md), and the process pool knows nothing of the env. Every import is
counted, those inside functions too, since a lazy import reaches upward all the same."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module's layer is that of its longest matching prefix.
LAYERS = [
    # the package's __init__ only registers the tasks; configs are data
    ("fastenv._kernels", "fastenv.errors", "fastenv.sim", "fastenv.envs", "fastenv.configs"),
    ("fastenv.kernels", "fastenv.metabolic"),
    ("fastenv.references", "fastenv.observation", "fastenv.actuation", "fastenv.render"),
    ("fastenv.env",),
    ("fastenv.pool",),
    ("fastenv.vector",),
    ("fastenv.adapters", "fastenv.collect"),
    ("fastenv.train", "fastenv.train_rllib", "fastenv.train_jax", "fastenv.evaluate",
     "fastenv.__main__"),
]
# The pool steps whatever its factory builds: of the runtime it may use only these.
POOL_MAY_IMPORT = ("fastenv.pool", "fastenv.errors")


def _layer(module: str) -> int | None:
    if module == "fastenv":
        return 0
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (
                    best is None or len(p) > len(best[1])):
                best = (rank, p)
    return None if best is None else best[0]


def _sources():
    """(module name, path) of every runtime source: fastenv/ and envs/ (fastenv.envs)."""
    for path in sorted((ROOT / "fastenv").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(p for p in parts if p != "__init__"), path
    for path in sorted((ROOT / "envs").glob("*.py")):
        stem = path.stem
        yield "fastenv.envs" + ("" if stem == "__init__" else f".{stem}"), path


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of the checkout (not a name in one)."""
    parts = name.split(".")
    if parts[:2] == ["fastenv", "envs"]:
        path = ROOT.joinpath("envs", *parts[2:])
    else:
        path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists() \
        or any(path.parent.glob(path.name + ".*.so")) or path.with_suffix(".pyx").exists()


def _imports(module: str, path: Path):
    """Every fastenv module ``path`` imports (``from fastenv import x`` counts as
    ``fastenv.x``, relative imports resolved), with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base
                     for a in node.names]
        else:
            continue
        for name in names:
            if name == "fastenv" or name.startswith("fastenv."):
                yield name, node.lineno


def test_every_runtime_module_has_a_layer():
    assert [m for m, _ in _sources() if _layer(m) is None] == []


def test_no_module_reaches_upward():
    upward = []
    for module, path in _sources():
        own = _layer(module)
        for name, line in _imports(module, path):
            target = _layer(name)
            if target is None or target > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({module}) imports {name}")
    assert upward == []


def test_the_pool_is_independent_of_the_env():
    reaches = [f"{path.relative_to(ROOT)}:{line} imports {name}"
               for module, path in _sources() if module.startswith("fastenv.pool")
               for name, line in _imports(module, path)
               if not name.startswith(POOL_MAY_IMPORT)]
    assert reaches == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The test above can fail: an env importing the vector env is found."""
    source = tmp_path / "env.py"
    source.write_text("def f():\n    from fastenv.vector import OsimVectorEnv\n")
    found = [(n, _layer(n)) for n, _ in _imports("fastenv.env", source)]
    assert found == [("fastenv.vector", _layer("fastenv.vector"))]
    assert _layer("fastenv.vector") > _layer("fastenv.env")
