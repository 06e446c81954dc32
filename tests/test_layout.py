"""The package's layout rules (issue 26), read from the source with ``ast``.

- No module uses another module's private (``_name``) function, class, constant or module: not by
  ``from X import _name``, not through a private module path (``from tsfm.x._impl import f``), not
  as ``X._name`` on an imported module and not as ``obj._name`` on an object when no code of this
  module defines ``_name`` (``forecaster._load_model()`` outside the Forecaster's module). A
  package may use its own private sub-modules.
- No file of the package is over ``MAX_LINES`` lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# source folder -> the package it installs as (pyproject's package-dir)
PACKAGES = {"tsfm": "tsfm", "cli": "tsfm.cli", "export": "tsfm.export", "runtime/tsfm_runtime": "tsfm_runtime"}
FIRST_PARTY = ("tsfm", "tsfm_runtime")
MAX_LINES = 600
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}  # public despite the underscore


def modules() -> Iterator[tuple[str, Path]]:
    """(module name, file) of every module of the installed packages."""
    for folder, package in PACKAGES.items():
        root = REPO / folder
        for path in sorted(root.rglob("*.py")) if root.is_dir() else ():
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([package, *parts]), path


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def first_party(module: str) -> bool:
    return module.split(".")[0] in FIRST_PARTY


def private_part(module: str, importer: str) -> str | None:
    """The first private component of ``module``'s path outside the importer's own packages."""
    parts = module.split(".")
    own = importer.split(".")
    for i, part in enumerate(parts):
        if is_private(part) and parts[:i] != own[:i]:
            return part
    return None


def resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_uses(module: str, source: str, label: str, is_package: bool = False) -> list[str]:
    """Every use of another module's private name in ``source``, the text of ``module`` (``label:line: what``)."""
    tree = ast.parse(source, filename=label)
    own_package = module if is_package else module.rpartition(".")[0]
    where = lambda node: f"{label}:{node.lineno}"  # noqa: E731
    found: list[str] = []
    module_names: dict[str, str] = {}  # local name -> first-party module it is bound to
    known = {name for name, _ in modules()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not first_party(alias.name):
                    continue
                part = private_part(alias.name, module)
                if part:
                    found.append(f"{where(node)}: import {alias.name} (private module {part})")
                if alias.asname:
                    module_names[alias.asname] = alias.name
                else:
                    module_names[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            source = resolve(node, module, is_package)
            if not first_party(source):
                continue
            part = private_part(source, module)
            if part:
                found.append(f"{where(node)}: from {source} import ... (private module {part})")
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if target in known:
                    module_names[alias.asname or alias.name] = target
                if is_private(alias.name) and source != module and not (source == own_package and target in known):
                    found.append(f"{where(node)}: from {source} import {alias.name}")
    defined = names_defined(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in module_names:
                owner = ".".join([module_names[value.id], *reversed(chain[1:])])
                if owner != module and (owner in known or owner in module_names.values()):
                    found.append(f"{where(node)}: {owner}.{node.attr}")
            elif node.attr not in defined and node.attr not in NAMEDTUPLE_API:
                found.append(f"{where(node)}: {ast.unparse(node)} (defined in another module)")
    return found


def names_defined(tree: ast.AST) -> set[str]:
    """Names this module's own code defines: functions, classes, assigned names and attributes."""
    defined = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Store):
            defined.add(node.id if isinstance(node, ast.Name) else node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    return defined


def test_no_module_uses_another_modules_private_names() -> None:
    found = [use for module, path in modules()
             for use in private_uses(module, path.read_text(), str(path.relative_to(REPO)), path.name == "__init__.py")]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_no_file_is_over_the_line_limit() -> None:
    long = {str(path.relative_to(REPO)): n for _, path in modules()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tsfm.data.windows import _finite_exog\n", ["from tsfm.data.windows import _finite_exog"]),
        ("from ..data.windows import _finite_exog\n", ["from tsfm.data.windows import _finite_exog"]),
        ("from tsfm.kernels._impl import scan\n", ["private module _impl"]),
        ("import tsfm.kernels.cpu_scan as cs\ncs._load()\n", ["tsfm.kernels.cpu_scan._load"]),
        ("from tsfm.data import windows\nwindows._finite_exog(x)\n", ["tsfm.data.windows._finite_exog"]),
        ("from tsfm import __version__\nself._x = 1\nself._x\n", []),
        ("def run(forecaster):\n    forecaster._load_model()\n", ["forecaster._load_model (defined in another"]),
        ("from tsfm.nn.inputs import fit_context\n", []),
    ],
)
def test_the_private_name_check_sees_every_form(source: str, expected: list[str]) -> None:
    found = private_uses("tsfm.train.probe", source, "probe.py")
    assert len(found) == len(expected) and all(e in f for e, f in zip(expected, found)), found
