"""Finding and loading recipes: recipes/ in the checkout, site recipes from PFBUILD_RECIPES."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from builder.core.checkout import RECIPES_DIR
from builder.core.errors import PfbuildError, shorten
from builder.model.recipe import NAME_RE, Recipe, bad_field

log = logging.getLogger("pfbuild")


def recipe_dirs() -> list[Path]:
    """Folders searched for recipes: PFBUILD_RECIPES (colon-separated) first, then recipes/."""
    extra = [Path(p) for p in os.environ.get("PFBUILD_RECIPES", "").split(":") if p]
    return [*extra, RECIPES_DIR]


def _recipe_file(name: str) -> Path | None:
    for folder in recipe_dirs():
        candidate = folder / f"{name.replace('-', '_')}.py"
        if candidate.is_file():
            return candidate
    return None


def available_recipes() -> list[str]:
    """Names of the recipes found in the recipe folders."""
    return sorted(
        {
            p.stem.replace("_", "-")
            for folder in recipe_dirs()
            for p in folder.glob("*.py")
            if not p.stem.startswith("_")
        }
    )


@dataclass(frozen=True)
class RecipeOrigin:
    """Which file a recipe came from: a site recipe is code the user runs with their rights."""

    name: str
    path: Path
    sha256: str
    site: bool
    shadows: bool

    def as_json(self) -> dict[str, Any]:
        """The record sources.json and the manifest keep."""
        return {
            "name": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "site": self.site,
            "shadows_builtin": self.shadows,
        }


def recipe_origin(name: str) -> RecipeOrigin:
    """The file `name` is loaded from, its sha256, and whether it is a site recipe."""
    path = _recipe_file(name) if NAME_RE.fullmatch(name) else None
    if path is None:
        raise PfbuildError(
            f"unknown recipe {shorten(name)}",
            f"available: {', '.join(available_recipes())}",
            "pass one of the available recipe names",
        )
    site = path.parent.resolve() != RECIPES_DIR.resolve()
    builtin = RECIPES_DIR / path.name
    return RecipeOrigin(
        name=name,
        path=path.absolute(),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        site=site,
        shadows=site and builtin.is_file(),
    )


@functools.cache
def _announce(origin: RecipeOrigin) -> None:
    # Once per process and file: a site recipe is code, and a shadowing one replaces a pinned
    # key or hash of ours, so it is named on every command that loads it.
    what = "shadows the built-in recipe" if origin.shadows else "is a site recipe"
    log.warning("recipe %s %s: %s (sha256 %s)", origin.name, what, origin.path, origin.sha256[:16])


def _import_recipe_module(path: Path) -> ModuleType:
    if path.parent == RECIPES_DIR:
        return importlib.import_module(f"recipes.{path.stem}")
    # A site recipe outside the tree: imported from its file under a name of its own.
    spec = importlib.util.spec_from_file_location(f"pfbuild_site_recipe_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise PfbuildError(f"cannot import recipe file {path}", fix="check the file name")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise PfbuildError(
            f"site recipe {path} failed to import",
            f"{type(exc).__name__}: {exc}",
            "fix that file, or remove its folder from PFBUILD_RECIPES",
        ) from None
    return module


def load_recipe(name: str) -> Recipe:
    """Load and validate the recipe called `name` (e.g. "postfix", "mimalloc-secure")."""
    origin = recipe_origin(name)
    path = origin.path
    if origin.site:
        _announce(origin)
    module = _import_recipe_module(path)
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise bad_field(name, "RECIPE", "the module must define RECIPE = Recipe(...)")
    if recipe.name != name:
        raise bad_field(name, "name", f"module {path} defines recipe {recipe.name!r}")
    maintainer = maintainer_from_env(os.environ)
    return dataclasses.replace(recipe, maintainer=maintainer) if maintainer else recipe


# What a changelog trailer and a deb822 field can hold: no line breaks, one <address>.
_IDENTITY_RE = re.compile(r"[^<>\n\r]+ <[^<>@\s]+@[^<>@\s]+>")


def maintainer_from_env(environ: Mapping[str, str]) -> str | None:
    """`Name <email>` from DEBFULLNAME and DEBEMAIL (as dch reads them); None when unset.

    The repository's maintainer signs our changelog entries instead of the recipe's default.
    DEBEMAIL may carry the name itself ("Name <email>"), as devscripts allows.
    """
    name = environ.get("DEBFULLNAME", "").strip()
    email = environ.get("DEBEMAIL", "").strip()
    if not name and not email:
        return None
    identity = email if "<" in email else f"{name} <{email}>"
    if not _IDENTITY_RE.fullmatch(identity):
        raise PfbuildError(
            f"DEBFULLNAME/DEBEMAIL give {identity!r}, not 'Name <email>'",
            "it signs the changelog entry of every package pfbuild builds",
            "set DEBFULLNAME to a name and DEBEMAIL to an address, or unset both",
        )
    return identity
