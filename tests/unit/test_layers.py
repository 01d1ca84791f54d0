"""The layer order of builder/: a module imports only from its own layer or the layers below."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BUILDER = Path(__file__).resolve().parents[2] / "builder"

# Bottom to top: the pipeline's stages in the order a release runs them, between the model and
# the pipeline that strings them together. This tuple is the one place the order is written.
LAYERS = (
    "core",
    "model",
    "fetch",
    "source",
    "bootstrap",
    "build",
    "check",
    "publish",
    "image",
    "pipeline",
    "commands",
    "cli",
)


def layer_of(module: str) -> int:
    """The layer index of a dotted module name under builder (the package itself is core)."""
    parts = module.split(".")
    if parts[0] != "builder":
        raise ValueError(module)
    if len(parts) == 1:
        return 0  # builder/__init__.py holds only the version
    name = parts[1]
    if name == "__main__":
        return LAYERS.index("cli")
    return LAYERS.index(name)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every builder module `path` imports, with the line it is imported on."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "builder":
                found += [(node.lineno, f"builder.{a.name}") for a in node.names]
            elif node.module.startswith("builder."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("builder.")]
    return found


def upward_imports(root: Path) -> list[str]:
    """`file:line imports module` for every import from a higher layer."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        own = layer_of(module)
        for line, imported in imported_modules(path):
            if imported == "builder.__version__":
                continue
            if layer_of(imported) > own:
                problems.append(f"{path.relative_to(root.parent)}:{line} imports {imported}")
    return problems


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in BUILDER.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), f"give {sorted(packages - set(LAYERS))} a place in LAYERS"


def test_no_module_imports_from_a_layer_above_it() -> None:
    assert upward_imports(BUILDER) == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    root = tmp_path / "builder"
    (root / "core").mkdir(parents=True)
    (root / "publish").mkdir()
    (root / "core" / "errors.py").write_text("from builder.publish.repo import publish_repo\n")
    (root / "publish" / "repo.py").write_text("from builder.core.errors import PfbuildError\n")
    assert upward_imports(root) == ["builder/core/errors.py:1 imports builder.publish.repo"]
