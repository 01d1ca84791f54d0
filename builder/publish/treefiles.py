"""A published tree's files by tree-relative path, from a folder or fetched from a URL."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from builder.core.download import DownloadError, download
from builder.core.errors import PfbuildError
from builder.publish.tree import tree_path


class TreeFiles:
    """A published tree's files by tree-relative path: a folder, or a URL fetched into tmp."""

    def __init__(self, location: str, scratch: Path) -> None:
        parts = urllib.parse.urlsplit(location)
        self.remote = parts.scheme in ("http", "https")
        if parts.scheme == "file":
            location = urllib.parse.unquote(parts.path)
        elif parts.scheme and not self.remote:
            raise PfbuildError(
                f"{location} is neither a folder nor an http(s):// or file:// URL",
                fix="pass --repo with the repository's URL or a local copy of it",
            )
        self.base = location.rstrip("/") + "/" if self.remote else ""
        self.root = scratch if self.remote else Path(location)
        if not self.remote and not self.root.is_dir():
            raise PfbuildError(f"{location} is not a folder", fix="pass the repository's folder")

    def get(self, rel: str) -> Path | None:
        """The file at `rel`, or None when the tree has none."""
        path = tree_path(self.root, rel)
        if not self.remote:
            if not path.resolve().is_relative_to(self.root.resolve()):
                raise PfbuildError(f"{rel} leads outside the tree")
            return path if path.is_file() else None
        if path.is_file():
            return path
        try:
            download(self.base + urllib.parse.quote(rel), path)
        except DownloadError as exc:
            if exc.reason.startswith(("HTTP 404", "HTTP 410")):
                return None
            raise
        return path

    def read(self, rel: str) -> bytes | None:
        """The bytes at `rel`, or None."""
        path = self.get(rel)
        return path.read_bytes() if path is not None else None
