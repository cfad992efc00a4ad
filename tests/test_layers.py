"""The package layers of src/cartola/ run one way: each package imports only from itself and the
packages listed before it (docs/ARCHITECTURE.md), and no private ``_name`` crosses packages."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cartola"

# Ground first. A package may import from itself and from the packages before it.
LAYERS = [
    ("errors", "console", "codec", "published"),
    ("config", "config_values"),
    ("metadata",),
    ("data",),
    ("validation",),
    ("models",),
    ("pipeline",),
    ("registry",),
    ("serving",),
    ("scoring",),
    ("reports",),
    ("monitoring",),
    ("orchestration",),
    ("cli",),
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def _package(module: str) -> str:
    """``cartola.serving.model`` -> ``serving``; ``cartola.config`` -> ``config``."""
    return module.split(".")[1]


def _imports(path: Path) -> Iterator[Tuple[int, str, List[str]]]:
    """(line, imported cartola module, imported names) of every import, nested ones too."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cartola."):
                    yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cartola":
                for alias in node.names:
                    yield node.lineno, f"cartola.{alias.name}", []
            elif node.module.startswith("cartola."):
                yield node.lineno, node.module, [alias.name for alias in node.names]


def _modules() -> List[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def _own_package(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else path.stem


def test_every_package_has_a_layer():
    """A new package or loose module must be placed in LAYERS before it can import anything."""
    assert not sorted({_own_package(p) for p in _modules()} - set(RANK))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_down(path):
    own = _own_package(path)
    upward = [f"{path.relative_to(SRC)}:{line} imports {module}"
              for line, module, _ in _imports(path)
              if _package(module) in RANK and RANK[_package(module)] > RANK[own]]
    assert not upward


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_name_crosses_packages(path):
    own = _own_package(path)
    private = [f"{path.relative_to(SRC)}:{line} imports {module}.{name}"
               for line, module, names in _imports(path) for name in names
               if name.startswith("_") and _package(module) != own]
    assert not private
