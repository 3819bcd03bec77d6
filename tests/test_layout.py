"""The tests' own layout rule: a test module never imports another test module. What tests share
lives in tests/support/ (helpers, fixtures, constants) and tests/fakes/ (stand-ins for outside
systems); anything may import those, and they import no test module either."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent
SHARED = ("support", "fakes")  # the packages under tests/ that may be imported


def _imported(path: Path) -> list[tuple[int, str]]:
    """The modules a file imports, as dotted names (relative imports resolved), with their lines."""
    package = path.relative_to(TESTS.parent).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # `from . import x` may name a module: count each name as one too.
            found += [(node.lineno, module)] + [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return found


def _is_test_module(dotted: str) -> bool:
    """A module under tests/ outside the shared packages, or any conftest or test_ module."""
    parts = dotted.split(".")
    if parts[0] != "tests" or len(parts) == 1:
        return False
    path = TESTS.parent.joinpath(*parts)
    if not (path.with_suffix(".py").is_file() or path.is_dir()):
        return False  # a name imported from a module, not a module
    return parts[1] not in SHARED or parts[-1] == "conftest" or parts[-1].startswith("test_")


def test_no_test_module_imports_another_test_module():
    wrong = [
        f"{path.relative_to(TESTS.parent)}:{line} imports {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, module in _imported(path)
        if _is_test_module(module)
    ]
    assert wrong == [], "import from tests.support or tests.fakes instead:\n" + "\n".join(wrong)


def test_the_rule_sees_test_modules_and_resolves_relative_imports():
    assert _is_test_module("tests.api.test_stripe")
    assert _is_test_module("tests.conftest")
    assert _is_test_module("tests.integration.crash_child")
    assert _is_test_module("tests.fakes.stripe_standin.conftest")
    assert not _is_test_module("tests.support.service")
    assert not _is_test_module("tests.fakes.stripe_standin.webhooks")
    assert not _is_test_module("agentbilling.client")
    standin_test = TESTS / "fakes" / "stripe_standin" / "test_standin.py"
    assert "tests.fakes.stripe_standin.forms" in {module for _, module in _imported(standin_test)}
