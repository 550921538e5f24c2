"""Repository hygiene: the README's commands are what CI runs, and the code is ruff-clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quickstart_has_two_commands_and_ci_runs_the_test_one():
    commands = quickstart_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    install_demo, install_test = commands
    assert "workbench demo" in install_demo and "--test" in install_test
    test_command = install_test.split("&&", 1)[1].strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/install.sh --test" in ci
    assert ci.strip().splitlines()[-1].strip() == test_command


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_clean():
    result = subprocess.run(["ruff", "check", "workbench", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


def test_no_pickle_and_safe_torch_load():
    for path in (ROOT / "workbench").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import pickle" not in text, path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)


def _import_graph() -> dict[str, set[str]]:
    """workbench module -> the workbench modules it imports (module level and inside functions; imports for type
    checkers only, under ``if TYPE_CHECKING:``, never run and are left out)."""
    import ast

    mods = {}
    for path in (ROOT / "workbench").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    edges[mod].add(target)
    return edges


def test_no_import_cycles():
    edges = _import_graph()
    assert "workbench.detect" in edges["workbench.targets"] and "workbench.identity" in edges["workbench.targets"]
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(mod: str, path: list[str]) -> None:
        seen[mod] = 1
        for nxt in sorted(edges[mod]):
            assert seen.get(nxt) != 1, "import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]) \
                if nxt in path else nxt
            if nxt not in seen:
                visit(nxt, path + [nxt])
        seen[mod] = 2

    for mod in sorted(edges):
        if mod not in seen:
            visit(mod, [mod])
