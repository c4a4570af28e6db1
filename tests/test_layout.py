"""The house's shape: imports run one way, rooms stay small, search/ keeps few top-level modules.

Imports run cli -> search.{web, evaluation, output} -> the Library facade ->
search.{ingest, encoding, photos, query, ...} -> indexes -> nothing of ours.
Imports within one tier are fine; an upward one is a defect (the lower room
would then depend on what is built on it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 300
UPPER = ("search.web", "search.evaluation", "search.output")  # what only the CLI builds on
FACADE = ("search.library", "search")  # the package itself re-exports the facade


def tier(module: str) -> int:
    """4: the CLI, 3: web/evaluation/output, 2: the facade, 1: the engine's rooms, 0: storage."""
    if module == "cli":
        return 4
    if any(module == p or module.startswith(p + ".") for p in UPPER):
        return 3
    if module in FACADE:
        return 2
    return 1 if module.startswith("search.") else 0


def our_modules() -> dict[str, Path]:
    found = {"cli": ROOT / "cli.py"}
    for package in ("search", "indexes"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> Iterator[tuple[int, str]]:
    """(line, module) for every import of ours in the file, lazy and TYPE_CHECKING ones too."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from search import corpus` imports the submodule, not the package's API.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("search", "indexes", "cli"):
                yield node.lineno, name


def test_imports_only_run_down_the_tiers() -> None:
    modules = our_modules()
    upward = [f"{path.relative_to(ROOT)}:{line} ({name}, tier {tier(name)}) imports {target} "
              f"(tier {tier(target)})"
              for name, path in modules.items()
              for line, target in imports_of(path, modules)
              if tier(target) > tier(name)]
    assert upward == []


def test_imports_of_our_modules_are_absolute() -> None:
    # The tier check reads absolute names only: a relative import would slip past it.
    relative = [f"{path.relative_to(ROOT)}:{node.lineno}"
                for path in our_modules().values()
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == []


def test_the_tier_rule_catches_an_upward_import(tmp_path: Path) -> None:
    # The check above passes on an empty list, so make sure it can see a violation at all.
    offender = tmp_path / "offender.py"
    offender.write_text("def f():\n    from search.web.server import Server\n")
    found = list(imports_of(offender, our_modules()))
    assert found == [(2, "search.web.server")] and tier("search.web.server") > tier("search.query")


def test_no_module_is_over_three_hundred_lines() -> None:
    long = {str(path.relative_to(ROOT)): n for path in our_modules().values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_search_keeps_its_rooms_in_subpackages() -> None:
    top = sorted(p.name for p in (ROOT / "search").glob("*.py"))
    assert len(top) <= 10, top
    rooms = {p.name for p in (ROOT / "search").iterdir() if (p / "__init__.py").is_file()}
    assert {"encoding", "ingest", "photos", "evaluation", "web", "output"} <= rooms
    assert {"catalog", "vectors"} <= {p.name for p in (ROOT / "indexes").iterdir()
                                      if (p / "__init__.py").is_file()}
