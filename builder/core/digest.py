"""Content hashes: files, trees, data (recipes, targets) and pfbuild's own code."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from builder import __version__

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, str]:
    """A path with its sha256, as the manifest lists every artifact."""
    return {"path": str(path), "sha256": sha256_file(path)}


def hash_tree(root: Path) -> str:
    """A stable hash of every file's relative path, mode bit for execution, and content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def canonical(value: Any) -> Any:
    """Plain JSON data for dataclasses, mappings and sets, in an order that never varies.

    repr() is not stable across processes: a frozenset's order follows string hashing, which
    Python randomises per process.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (set, frozenset)):
        return sorted(canonical(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def data_digest(value: Any) -> str:
    """A short, process-independent hash of recipe or target data."""
    text = json.dumps(canonical(value), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def code_digest(*modules: ModuleType) -> str:
    """pfbuild's own code for a stage: a change to how a stage works re-runs it."""
    digest = hashlib.sha256(__version__.encode())
    for module in modules:
        if module.__file__ is None:
            raise ValueError(f"module {module.__name__} has no source file")
        digest.update(module.__name__.encode() + b"\0")
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:20]
