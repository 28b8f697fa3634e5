"""DESIGN 6: imports run one way, and only the CLI prints or exits.

The layers and forbidden imports are import-linter contracts in pyproject.toml,
checked here on the real import graph; what a contract cannot say (no
``aiohttp.web`` in tokens at run time, no printing outside the CLI) is checked
on the code itself.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "proxy"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.skip("lint-imports is missing: pip install -e '.[dev]'")
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_import_contract_is_kept() -> None:
    result = _lint_imports(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_way"),
    [
        ("config/schema.py", "import proxy.server.app"),  # the config reaching up to the server
        ("tokens/provider.py", "import proxy.forwarding.forwarder"),  # tokens reaching up
        ("console/history.py", "import proxy.cli.commands"),  # anything importing the CLI
        ("ratelimit/quota.py", "import aiohttp"),  # pure bookkeeping growing I/O
    ],
)
def test_an_import_that_runs_the_wrong_way_breaks_a_contract(
    tmp_path: Path, module: str, wrong_way: str
) -> None:
    """The contracts are not vacuous: a planted wrong-way import is caught."""
    shutil.copytree(PACKAGE, tmp_path / "proxy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "proxy" / module
    planted.write_text(planted.read_text() + f"\n{wrong_way}  # planted by the test\n")
    result = _lint_imports(tmp_path, tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout


def _runtime_imports(tree: ast.Module) -> list[tuple[str, int]]:
    """Every imported module name, except those under ``if TYPE_CHECKING:``."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, node.lineno))
            found.extend((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _modules(part: str = "") -> list[Path]:
    return sorted((PACKAGE / part).rglob("*.py"))


def test_tokens_never_load_aiohttps_server_side() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line} {name}"
        for path in _modules("tokens")
        for name, line in _runtime_imports(ast.parse(path.read_text()))
        if name == "aiohttp.web" or name.startswith(("aiohttp.web.", "aiohttp.web_"))
    ]
    assert offending == []


def _prints_or_exits(tree: ast.Module) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in {"print", "exit", "quit", "sys.exit", "os._exit", "os.abort"}:
                found.append((name, node.lineno))
        elif isinstance(node, ast.Raise) and node.exc is not None:
            if ast.unparse(node.exc).startswith("SystemExit"):
                found.append(("raise SystemExit", node.lineno))
        elif isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.stdout":
            found.append(("sys.stdout", node.lineno))
    return found


def test_only_the_cli_prints_or_exits() -> None:
    outside_cli = [path for path in _modules() if "cli" not in path.relative_to(PACKAGE).parts]
    assert len(outside_cli) > 30  # the scan sees the package
    offending = [
        f"{path.relative_to(ROOT)}:{line} {what}"
        for path in outside_cli
        if path.name != "__main__.py"
        for what, line in _prints_or_exits(ast.parse(path.read_text()))
    ]
    assert offending == []


def test_the_scan_of_prints_and_exits_sees_them() -> None:
    planted = ast.parse(
        "import sys\nprint('x')\nsys.exit(2)\nraise SystemExit(1)\nsys.stdout.write('x')\n"
    )
    assert [what for what, _ in sorted(_prints_or_exits(planted), key=lambda f: f[1])] == [
        "print",
        "sys.exit",
        "raise SystemExit",
        "sys.stdout",
    ]
