"""The docs are true: README.md and docs/*.md run, and their figures come from measurements.

* Every ```python block runs verbatim, three ways, each in a fresh interpreter in an
  empty temporary folder: as a script file without an ``if __name__ == "__main__":``
  guard (``python snippet.py``), piped into ``python -``, and through
  ``exec(compile(src, "<snippet>", "exec"))`` in ``python -c`` (as a notebook cell runs
  it). The default suite runs the script way; the other two, which differ only in how
  worker processes find ``__main__`` (``tests/test_launch.py`` covers that for the pool
  in the default suite), run with ``-m slow``. A block that must not run needs another
  fence language (```text).
* The README's ``fastenv ...`` commands run: the cheap ones in the default suite, the
  quick start and ``fastenv bench`` verbatim with ``-m slow``.
* The tables between ``<!-- table: NAME -->`` markers are exactly what
  ``python docs/tables.py`` writes from ``bench/results/*.json``: a hand-edited figure
  fails here.
* What the pages name exists: linked files and headings, options, observation blocks,
  test functions, the default start method.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)
SNIPPET_TIMEOUT = 90     # s: a snippet builds at most a few envs and steps them briefly
COMMAND_TIMEOUT = 120


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def blocks(path: Path, lang: str):
    """(line number, source) of every fenced block of ``lang`` in ``path``."""
    text = path.read_text()
    for m in FENCE.finditer(text):
        if m["lang"] == lang:
            yield text.count("\n", 0, m.start()) + 1, m["body"]


SNIPPETS = [pytest.param(src, id=f"{_rel(p)}:{line}")
            for p in DOCS for line, src in blocks(p, "python")]


def _load_tables():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "docs" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args, cwd, timeout, input=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)   # the installed fastenv, as a user has it
    try:
        return subprocess.run(args, cwd=cwd, input=input, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args[:2]} did not finish in {timeout} s (a hang, or an env left "
                    f"open?)\nstdout: {exc.stdout}\nstderr: {exc.stderr}")


# ----------------------------------------------------------------------- snippets
def test_docs_have_snippets():
    assert len(SNIPPETS) >= 5
    assert any("fastenv.vector" in p.values[0] for p in SNIPPETS)


@pytest.mark.parametrize("how", ["script", pytest.param("stdin", marks=pytest.mark.slow),
                                 pytest.param("exec", marks=pytest.mark.slow)])
@pytest.mark.parametrize("src", SNIPPETS)
def test_snippet_runs(src, how, tmp_path):
    assert "__name__" not in src, "snippets run without a main guard; do not add one"
    if how == "script":
        (tmp_path / "snippet.py").write_text(src)
        r = _run([sys.executable, "snippet.py"], tmp_path, SNIPPET_TIMEOUT)
    elif how == "stdin":
        r = _run([sys.executable, "-"], tmp_path, SNIPPET_TIMEOUT, input=src)
    else:
        cell = f"src = {src!r}\nexec(compile(src, '<snippet>', 'exec'))\n"
        r = _run([sys.executable, "-c", cell], tmp_path, SNIPPET_TIMEOUT)
    assert r.returncode == 0, f"{how}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    printed = r.stdout.splitlines()
    for shown in shown_outputs(src):
        assert any(shown.match(line) for line in printed), (
            f"the snippet's comment '# → ...' shows output that it does not print: "
            f"{shown.pattern!r} matches none of\n{r.stdout}")


def shown_outputs(src: str) -> list[re.Pattern]:
    """The output a snippet's ``# → TEXT`` comments show: each must begin a printed line
    (``...`` stands for anything; a parenthesised remark after the text is prose)."""
    out = []
    for m in re.finditer(r"# → (.*)$", src, re.M):
        text = re.sub(r"\s+\([a-z][^()]*\)$", "", m[1].strip())   # "246 (two cycles ...)"
        out.append(re.compile(".*?".join(re.escape(part) for part in text.split("..."))))
    return out


def test_shown_outputs_are_read():
    src = "print(1)  # → 246 (two cycles per episode)\n# → (152,) ['a', ...]\n"
    first, second = shown_outputs(src)
    assert first.match("246") and not first.match("214")
    assert second.match("(152,) ['a', 'b']") and not second.match("(98,) ['a']")


# ----------------------------------------------------------------------- commands
def readme_commands() -> list[str]:
    """``fastenv ...`` lines of the README's bash blocks, without their comments."""
    out = []
    for _, body in blocks(README, "bash"):
        for line in body.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("fastenv"):
                out.append(line)
    return out


#: Hours of training and its evaluation: tests/test_train.py runs the same commands on a
#: few hundred steps (train, resume, evaluate with --json/--plot/--export).
LEARNING = ("train", "evaluate")


def _expensive(command: str) -> bool:
    """Commands that take tens of seconds: run verbatim only with -m slow."""
    args = shlex.split(command)
    if args[1:2] == ["bench"] or args[1:2][0] in LEARNING:
        return True
    if args[1:2] == ["rollout"]:
        steps = int(args[args.index("--steps") + 1]) if "--steps" in args else 1000
        return steps > 200
    if args[1:2] == ["render"]:
        return float(args[args.index("--seconds") + 1]) > 1 if "--seconds" in args else True
    return False


def test_setup_is_two_commands():
    setup = README.read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    bash = [body for _, body in blocks(README, "bash") if body in setup]
    assert bash == ['pip install -e ".[dev]"\npytest\n']


def test_readme_names_the_commands():
    commands = readme_commands()
    for needed in ("fastenv tasks", "fastenv rollout", "fastenv bench", "fastenv --version"):
        assert any(c.startswith(needed) for c in commands), needed
    assert any(not _expensive(c) and " rollout" in c for c in commands), \
        "a cheap rollout command keeps the CLI exercised in the default suite"


@pytest.mark.parametrize("command", [c for c in readme_commands() if not _expensive(c)])
def test_readme_command_runs(command, tmp_path):
    r = _run(shlex.split(command), tmp_path, COMMAND_TIMEOUT)
    assert r.returncode == 0, f"{command}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    if command == "fastenv --version":
        import fastenv
        assert r.stdout.strip() == f"fastenv {fastenv.__version__}"
    if command == "fastenv tasks":
        from fastenv.envs import TASKS
        assert [line.split()[0] for line in r.stdout.splitlines()] == list(TASKS)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in readme_commands() if _expensive(c)
                                     and shlex.split(c)[1] not in (*LEARNING, "render")])
def test_readme_command_runs_verbatim_slow(command, tmp_path):
    r = _run(shlex.split(command), tmp_path, 900)
    assert r.returncode == 0, f"{command}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "steps/s" in r.stdout


def test_readme_cli_options_exist(tmp_path):
    """Every ``--option`` the README names after a ``fastenv CMD`` (in its command line or
    sentence) is in that command's --help."""
    chunks = re.split(r"(?=\bfastenv\s+(?:tasks|rollout|bench|train|evaluate|render|--)\b)",
                      README.read_text())
    mentions = {}
    for chunk in chunks:
        chunk = re.split(r"\.\s|;\s|\n\n|\n```", chunk)[0]   # its sentence or code line
        m = re.match(r"fastenv\s+(\w+)", chunk)
        if m:
            mentions.setdefault(m.group(1), set()).update(re.findall(r"(--[a-z][\w-]*)", chunk))
    assert {"rollout", "bench", "train", "evaluate"} <= set(mentions)
    for name, options in mentions.items():
        r = _run(["fastenv", name, "--help"], tmp_path, COMMAND_TIMEOUT)
        assert r.returncode == 0, r.stderr
        for option in options - {"--help"}:
            assert option in r.stdout, f"fastenv {name} has no {option}"


# ----------------------------------------------------------------------- tables
def test_tables_are_generated_from_bench_results():
    tables = _load_tables()
    for path in DOCS:
        text = path.read_text()
        assert tables.render(text, str(path)) == text, (
            f"{_rel(path)}: a table differs from bench/results; run python docs/tables.py "
            "(figures are not edited by hand)")


def test_every_table_is_used_and_every_region_known():
    tables = _load_tables()
    used = set()
    for path in DOCS:
        text = path.read_text()
        names = re.findall(r"<!-- table: ([\w-]+) -->", text)
        assert len(names) == text.count("<!-- /table -->"), f"{_rel(path)}: unclosed region"
        used.update(names)
    assert used == set(tables.TABLES)


def test_tables_check_mode_passes():
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "tables.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------- names
def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_links_resolve(path):
    text = FENCE.sub("", path.read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{_rel(path)} links to {target}: no such file"
        if anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", FENCE.sub("", dest.read_text()), re.M)
            assert anchor in {_slug(h) for h in headings}, \
                f"{_rel(path)} links to {target}: no such heading"


def test_named_tests_exist():
    """The test functions the docs cite (the faults table) exist."""
    sources = "".join(p.read_text() for folder in ("tests", "bench", "refgen")
                      for p in (ROOT / folder).rglob("test_*.py"))
    for path in DOCS:
        for name in re.findall(r"\b(test_\w+)\b(?!\.py)", path.read_text()):
            assert f"def {name}(" in sources, f"{_rel(path)} cites {name}, which is gone"


def test_options_are_documented():
    from fastenv.envs import OPTIONS
    from fastenv.vector import VECTOR_OPTIONS
    tasks = (ROOT / "docs" / "tasks.md").read_text()
    rows = re.findall(r"^\| (`.*?) \|", tasks, re.M)
    documented = {o for row in rows for o in re.findall(r"`(\w+)`", row)}
    assert set(OPTIONS) <= documented, set(OPTIONS) - documented
    vector = (ROOT / "docs" / "vector.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|", vector, re.M)
    assert set(VECTOR_OPTIONS) - {"max_episode_steps"} <= set(rows)


def test_default_start_method_is_the_documented_one():
    from fastenv.vector import OsimVectorEnv
    default = inspect.signature(OsimVectorEnv).parameters["start_method"].default
    for path in (README, ROOT / "docs" / "vector.md"):
        assert f'start_method="{default}"' in path.read_text(), _rel(path)


def test_observation_blocks_are_documented_in_order():
    from fastenv.observation import OBSERVATION_BLOCKS
    section = README.read_text().split("## Observations", 1)[1].split("\n## ", 1)[0]
    cells = re.findall(r"^\| (`.*?) \|", section, re.M)
    named = [n for cell in cells for n in re.findall(r"`(\w+)`", cell)]
    assert named == [b.name for b in OBSERVATION_BLOCKS]


def test_readme_is_a_newcomers_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; details go to docs/"
    text = "\n".join(lines)
    assert "fastenv-opensim" in text and "## Actions" in text and "## Observations" in text
