"""The server is a separate program: nothing in server/ imports the pipeline (`ci`)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "server"


def imported_modules(source: str) -> set[str]:
    """Every module an `import` or `from ... import` names, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_no_server_module_imports_ci():
    modules = sorted(SERVER.rglob("*.py"))
    assert len(modules) > 10  # the package was found
    offenders = {
        str(path.relative_to(SERVER.parent)): sorted(
            name for name in imported_modules(path.read_text()) if name.split(".")[0] == "ci"
        )
        for path in modules
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_import_scan_sees_function_level_and_from_imports():
    source = "def f():\n    from ci.errors import UserError\nimport ci.config as c\nimport civic\n"
    assert imported_modules(source) == {"ci.errors", "ci.config", "civic"}
