"""Prepare a source package per target: Debian's packaging, our overlays, a .dsc."""

from __future__ import annotations

import difflib
import email.utils
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from debian.changelog import Changelog

from builder.core import run
from builder.core.atomic import atomic_dir, pid_temp_dir
from builder.core.context import Context
from builder.core.errors import CommandError, PfbuildError
from builder.core.unpack import check_tarball, extract_tarball, single_top_dir
from builder.fetch.cache import ROLE_DEBIAN, ROLE_SOURCE, FetchResult, write_provenance
from builder.fetch.sources import fetch
from builder.model.distro import Distribution
from builder.model.recipe import (
    HardeningFlags,
    Overlay,
    Recipe,
    Replacement,
    template_dirs,
    template_file,
    template_root,
)
from builder.model.version import target_version

log = logging.getLogger("pfbuild")

MAINT_LINE_RE = re.compile(r"^\s*(export\s+)?DEB_[A-Z]+_MAINT_[A-Z_]+\s*[:?+]?=")
POSTCONF_NAME_RE = re.compile(r"^([a-z0-9_]+)\s*=")
REPORT_NAME = "overlays.diff"
PROVENANCE_NAME = "sources.json"


@dataclass(frozen=True)
class FileChange:
    """One packaging file before and after our overlays."""

    path: str
    before: str
    after: str

    def diff(self) -> str:
        """A unified diff of the change against Debian's file."""
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                f"a/{self.path}",
                f"b/{self.path}",
            )
        )


def dpkg_source_build_cmdline(tree: str) -> list[str]:
    """Build the source package from `tree` (patches are applied, so a bad patch fails here)."""
    # The new .dsc stays unsigned: it is our own product, the signed apt repository vouches
    # for what we publish.
    return ["dpkg-source", "--build", tree]


def arch_groups(flags: HardeningFlags) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Architectures that share the same extra CFLAGS, sorted: [((amd64, i386), (flags...))]."""
    by_flags: dict[tuple[str, ...], list[str]] = {}
    for arch, extra in sorted(flags.arch_cflags.items()):
        by_flags.setdefault(tuple(extra), []).append(arch)
    return sorted((tuple(arches), extra) for extra, arches in by_flags.items())


def template_environment(recipe: Recipe) -> jinja2.Environment:
    """Jinja2 for packaging files: undefined variables are errors, text is not HTML-escaped."""
    return jinja2.Environment(  # noqa: S701  # Makefiles and main.cf, not HTML: no escaping
        loader=jinja2.FileSystemLoader(template_dirs(recipe)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_overlay(
    env: jinja2.Environment, recipe: Recipe, overlay: Overlay, variables: Mapping[str, Any]
) -> str:
    """Render one overlay template; any template error names the file."""
    found = template_file(recipe, overlay.template)
    name = str(found.relative_to(template_root().parent)) if found else overlay.template
    try:
        return env.get_template(overlay.template).render(**variables)
    except jinja2.TemplateError as exc:
        raise PfbuildError(
            f"template {name} failed to render",
            f"{type(exc).__name__}: {exc}",
            "fix the template or the recipe's template_options",
        ) from None


def apply_maint_flags(base: str, block: str, path: str) -> str:
    """Replace every DEB_*_MAINT_* assignment with `block`, placed where the first one was."""
    lines = base.splitlines(keepends=True)
    out: list[str] = []
    inserted = False
    skipping = False
    for line in lines:
        if skipping:
            skipping = line.rstrip("\n").endswith("\\")
            continue
        if MAINT_LINE_RE.match(line):
            skipping = line.rstrip("\n").endswith("\\")
            if not inserted:
                out.append(block)
                inserted = True
            continue
        out.append(line)
    if not inserted:
        raise PfbuildError(
            f"{path} has no DEB_*_MAINT_* lines to replace",
            "the base packaging changed shape",
            "check the packaging and the maint-flags overlay",
        )
    return "".join(out)


def apply_postconf(base: str, block: str) -> str:
    """Set the `name = value` lines of `block`, dropping earlier definitions of those names.

    An earlier definition goes with the comment lines right above it, which describe it.
    """
    names = {m.group(1) for line in block.splitlines() if (m := POSTCONF_NAME_RE.match(line))}
    out: list[str] = []
    dropping = False
    for line in base.splitlines(keepends=True):
        # Postfix continues a value on lines that start with whitespace.
        if dropping and line[:1] in (" ", "\t") and line.strip():
            continue
        match = POSTCONF_NAME_RE.match(line)
        dropping = bool(match and match.group(1) in names)
        if dropping:
            while out and out[-1].startswith("#"):
                out.pop()
        else:
            out.append(line)
    # Dropped paragraphs leave runs of blank lines behind: keep one.
    text = re.sub(r"\n{3,}", "\n\n", "".join(out))
    return text + ("" if text.endswith("\n") or not text else "\n") + block


def apply_replacement(base: str, fix: Replacement) -> str:
    """A per-target edit; refuse one whose text is not there (the base changed under it)."""
    if fix.old not in base:
        raise PfbuildError(
            f"per-target adjustment of {fix.path} does not apply",
            f"{fix.old!r} is not in the file ({fix.why})",
            "update the adjustment in the recipe",
        )
    return base.replace(fix.old, fix.new)


def release_date(epoch: int) -> str:
    """An RFC 2822 date, as changelogs carry it, for a Unix time."""
    # formatdate writes UTC as "-0000" ("unknown zone" in RFC 2822); changelogs say +0000.
    return email.utils.formatdate(epoch, localtime=False).replace("-0000", "+0000")


def entry_epoch(tree: Path, upstream_epoch: int) -> int:
    """Our entry's time: the upstream release, but never before the entry it sits on."""
    base = Changelog((tree / "debian" / "changelog").read_text(), max_blocks=1)
    if not base.date:
        return upstream_epoch
    previous = int(email.utils.parsedate_to_datetime(base.date).timestamp())
    # A new entry dated before (or with) the one below it reads as a reused date to tools.
    return max(upstream_epoch, previous + 1)


def changelog_entry(base: str, recipe: Recipe, version: str, dist: Distribution, epoch: int) -> str:
    """Debian's changelog with our entry on top (python-debian writes it)."""
    changelog = Changelog(base)
    changes = ["", *(f"  * {line}" for line in recipe.changes), ""]
    changelog.new_block(
        package=recipe.source_package,
        version=version,
        distributions=dist.name,
        urgency="medium",
        author=recipe.maintainer,
        date=release_date(epoch),
        changes=changes,
    )
    return str(changelog)


def _template_variables(recipe: Recipe, dist: Distribution) -> dict[str, Any]:
    return {
        "recipe": recipe,
        "target": dist,
        "hardening": recipe.hardening,
        "arch_groups": arch_groups(recipe.hardening),
        "options": recipe.template_options,
    }


def apply_overlays(
    tree: Path, recipe: Recipe, dist: Distribution, version: str, epoch: int
) -> list[FileChange]:
    """Render every overlay and per-target adjustment into `tree`; return what changed."""
    before: dict[str, str] = {}
    after: dict[str, str] = {}

    def read(path: str) -> str:
        if path not in after:
            file = tree / path
            if not file.is_file():
                raise PfbuildError(f"the base packaging has no {path}", fix="check the recipe")
            before[path] = after[path] = file.read_text()
        return after[path]

    def read_or_new(path: str) -> str:
        # A `replace` overlay may add a file the base packaging does not have.
        if path not in after and not (tree / path).exists():
            before[path] = after[path] = ""
        return read(path)

    env = template_environment(recipe)
    variables = _template_variables(recipe, dist)
    for overlay in recipe.overlays:
        block = render_overlay(env, recipe, overlay, variables)
        text = read_or_new(overlay.path) if overlay.mode == "replace" else read(overlay.path)
        if overlay.mode == "maint-flags":
            after[overlay.path] = apply_maint_flags(text, block, overlay.path)
        elif overlay.mode == "postconf":
            after[overlay.path] = apply_postconf(text, block)
        else:
            after[overlay.path] = block
    for fix in recipe.packaging_edits(dist.name):
        after[fix.path] = apply_replacement(read(fix.path), fix)
    after["debian/changelog"] = changelog_entry(
        read("debian/changelog"), recipe, version, dist, epoch
    )
    for path, text in after.items():
        (tree / path).write_text(text)
    return [FileChange(p, before[p], after[p]) for p in sorted(after) if before[p] != after[p]]


def _unpack_base(
    work: Path, recipe: Recipe, version: str, fetched: FetchResult
) -> tuple[Path, int]:
    """Lay out NAME-VERSION/ (upstream + debian/) and NAME_VERSION.orig.* in `work`."""
    # We unpack the verified tarballs ourselves instead of `dpkg-source -x` on Debian's signed
    # .dsc: that .dsc is signed by its uploader, whose key is in debian-keyring (not installed,
    # and not the trust anchor we use). `--require-valid-signature` cannot pass without it, and
    # without it a bad signature is only a warning. Trust comes from the archive chain (or the
    # recipe's pin) and Wietse's signature, checked in fetch; our own .dsc is unsigned.
    if recipe.upstream is not None:
        upstream, signature = fetched.tarball, fetched.signature
        upstream_version = version
    else:
        orig = [f for f in fetched.files if f.role == ROLE_SOURCE and ".orig." in f.name]
        if len(orig) != 1:
            raise PfbuildError(f"{fetched.dsc.name} does not have exactly one orig tarball")
        upstream, signature = orig[0], None
        upstream_version = recipe.packaging_for(version).upstream_version
    suffix = upstream.name.split(".orig", 1)[1] if ".orig" in upstream.name else ".tar.gz"
    orig_name = f"{recipe.source_package}_{upstream_version}.orig{suffix}"
    shutil.copyfile(upstream.path, work / orig_name)
    if signature is not None:
        shutil.copyfile(signature.path, work / f"{orig_name}.asc")
    unpacked = work / "unpacked"
    unpacked.mkdir()
    epoch = check_tarball(upstream.path)
    extract_tarball(upstream.path, unpacked)
    tree = work / f"{recipe.source_package}-{upstream_version}"
    single_top_dir(unpacked).rename(tree)
    unpacked.rmdir()
    if (tree / "debian").exists():
        # Debian's packaging is the base: an upstream debian/ folder must not mix into it.
        shutil.rmtree(tree / "debian")
    extract_tarball(fetched.get(ROLE_DEBIAN).path, tree)
    return tree, epoch


def _failed_patch(output: str) -> str | None:
    applied = re.findall(r"applying (\S+)", output)
    return applied[-1] if applied else None


def build_source_package(work: Path, tree: Path, epoch: int) -> Path:
    """Run dpkg-source -b; a patch that does not apply is named in a one-line error."""
    env = {"SOURCE_DATE_EPOCH": str(epoch), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    try:
        run.run(dpkg_source_build_cmdline(tree.name), cwd=work, env=env)
    except CommandError as exc:
        patch = _failed_patch(exc.details)
        if patch is not None:
            raise PfbuildError(
                f"debian/patches/{patch} does not apply to {tree.name}",
                "the base packaging does not fit this upstream release",
                "pin base packaging made for this release, or refresh the patch",
            ) from None
        raise
    dscs = sorted(work.glob("*.dsc"))
    if len(dscs) != 1:
        raise PfbuildError(f"dpkg-source made {len(dscs)} .dsc files in {work}")
    return dscs[0]


def _write_report(path: Path, changes: Sequence[FileChange]) -> None:
    head = [f"# {c.path}: {_counts(c)}\n" for c in changes]
    path.write_text("".join(head) + "\n" + "".join(c.diff() for c in changes))


def _counts(change: FileChange) -> str:
    diff = change.diff().splitlines()
    plus = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
    minus = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
    return f"+{plus} -{minus}"


def summary(out_dir: Path) -> str:
    """The per-file lines of a prepared source's overlay report."""
    report = (out_dir / REPORT_NAME).read_text()
    return "".join(line[2:] for line in report.splitlines(keepends=True) if line.startswith("# "))


def render_source(
    ctx: Context, recipe: Recipe, version: str, dist: Distribution, fetched: FetchResult
) -> Path:
    """Make one target's source package from fetched, verified inputs; return its .dsc."""
    ours = target_version(recipe, version, dist)
    out = ctx.source_dir(recipe.name, version, dist.name)
    with pid_temp_dir(ctx.tmp_dir, "source-") as tmpdir:
        work = Path(tmpdir)
        tree, upstream_epoch = _unpack_base(work, recipe, version, fetched)
        epoch = entry_epoch(tree, upstream_epoch)
        changes = apply_overlays(tree, recipe, dist, ours, epoch)
        dsc = build_source_package(work, tree, epoch)
        _write_report(work / REPORT_NAME, changes)
        # Which verified inputs this source package was made from, and how each was proven.
        write_provenance(work / PROVENANCE_NAME, fetched)
        with atomic_dir(out) as staging:
            for item in sorted(work.iterdir()):
                if item.is_file():
                    os.replace(item, staging / item.name)
    log.info("%s %s: %s for %s in %s", recipe.name, version, dsc.name, dist.name, out)
    return out / dsc.name


def prepare_source(ctx: Context, recipe: Recipe, version: str, dist: Distribution) -> Path:
    """Fetch (or reuse) verified sources and write the target's .dsc; return its path."""
    if dist.name not in recipe.binary_packages:
        raise PfbuildError(
            f"recipe {recipe.name} does not build for {dist.name}",
            f"its targets: {', '.join(recipe.binary_packages)}",
        )
    if not recipe.overlays:
        raise PfbuildError(
            f"recipe {recipe.name} has no packaging overlays yet",
            "pfbuild would only rebuild Debian's package unchanged",
            "add overlays (debian-templates/) to the recipe",
        )
    return render_source(ctx, recipe, version, dist, fetch(ctx, recipe, version))
