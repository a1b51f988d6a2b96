"""The package layering (docs/ARCHITECTURE.md): library packages never import the commands, and the
sampler and pipelines never import training code or Lightning, so an exported pipeline runs without them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "src" / "satdiffmoe"
LIBRARY = ("config", "data", "models", "sampling", "pipelines", "training", "evaluation", "sweeps", "reports")


def imports_of(package: str) -> list[tuple[str, str]]:
    """(file, imported module) for every import in a package, relative imports resolved; function-level too."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = ["satdiffmoe", *path.relative_to(ROOT).parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = parts[: len(parts) - node.level + 1] if node.level else []
                module = ".".join([*base, node.module] if node.module else base)
                found.append((path.name, module))
    return found


@pytest.mark.parametrize("package", LIBRARY)
def test_no_library_package_imports_the_commands(package):
    bad = [(f, m) for f, m in imports_of(package) if m.startswith(("satdiffmoe.commands", "satdiffmoe.cli"))]
    assert not bad, bad


@pytest.mark.parametrize("package", ["sampling", "pipelines", "models"])
def test_sampling_and_pipelines_never_reach_training_or_lightning(package):
    bad = [(f, m) for f, m in imports_of(package)
           if m.startswith(("satdiffmoe.training", "lightning", "pytorch_lightning"))]
    assert not bad, bad


def test_the_resolver_sees_relative_imports():
    # guards the test itself: it must notice the imports it is meant to police
    assert ("base.py", "satdiffmoe.pipelines.registry") in imports_of("training")
