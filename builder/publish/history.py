"""The repository's own history: every state of every suite, signed, inside the published tree.

A scheduled rebuild starts on a fresh machine whose aptly knows nothing; what it needs of the
past comes from the live tree, verified by the pinned key like everything else in it:

  states     each suite's published package sets in order (aptly keys name_version_arch with
             their SHA-256); the last one is live, and each names the state it replaced, which
             is what `--rollback` returns to
  files      every package file the suite ever published, with its SHA-256: a version that left
             the index (retention, rollback) still may not come back with other content
  builds     the inputs of every (source, version) built for the suite: the planner compares a
             new build's inputs with them to decide between "nothing to do" and the next +pfN;
             "build-env" among them holds the packages the build ran with (its .buildinfo's
             Installed-Build-Depends), which check-updates compares with the target's archive

It is a DSSE envelope signed by the repository key (builder.publish.dsse), beside the InRelease
files it describes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debian.debian_support import Version

from builder.core.errors import PfbuildError
from builder.core.schema import SHA256, validate
from builder.publish import dsse
from builder.publish.signing import SigningKey

HISTORY_NAME = "pfbuild-history.json"
PAYLOAD_TYPE = "application/vnd.pfbuild.repository-history+json"
SCHEMA_VERSION = 1
DEFAULT_KEEP = 3
# When a state was published (UTC), as the history writes it.
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The build input that names the build environment's packages: "name=version" words.
BUILD_ENV = "build-env"

_KEYED_SHA256 = {"type": "object", "additionalProperties": SHA256}
HISTORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "suites"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "suites": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["states", "files", "builds"],
                "additionalProperties": False,
                "properties": {
                    "states": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["date", "action", "packages", "previous"],
                            "additionalProperties": False,
                            "properties": {
                                "date": {"type": "string"},
                                "action": {"enum": ["publish", "rollback"]},
                                "packages": _KEYED_SHA256,
                                "previous": {"type": ["integer", "null"], "minimum": 0},
                            },
                        },
                    },
                    "files": _KEYED_SHA256,
                    "builds": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def split_key(key: str) -> tuple[str, str, str]:
    """name, version, architecture of an aptly package key (name_version_arch)."""
    name, rest = key.split("_", 1)
    version, arch = rest.rsplit("_", 1)
    return name, version, arch


@dataclass(frozen=True)
class State:
    """One published state of a suite."""

    date: str
    action: str
    packages: Mapping[str, str]
    previous: int | None


@dataclass
class SuiteHistory:
    """The states, files and build inputs of one suite."""

    states: list[State] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    builds: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    @property
    def live(self) -> State | None:
        """The state clients see now."""
        return self.states[-1] if self.states else None

    def record(self, state: State) -> None:
        """Append a state; its files join the ever-published ones."""
        self.states.append(state)
        self.files.update(state.packages)

    def rollback_state(self, suite: str) -> tuple[int, State]:
        """The state a rollback of the live one returns to, and its index."""
        live = self.live
        if live is None or live.previous is None:
            raise PfbuildError(
                f"suite {suite} has no earlier state to roll back to",
                f"its history holds {len(self.states)} state(s), the live one replaced none",
                "publish an older build instead",
            )
        return live.previous, self.states[live.previous]


@dataclass
class History:
    """Every suite's history."""

    suites: dict[str, SuiteHistory] = field(default_factory=dict)

    def suite(self, name: str) -> SuiteHistory:
        """The history of `name` (empty when never published)."""
        return self.suites.setdefault(name, SuiteHistory())

    def as_json(self) -> dict[str, Any]:
        """The payload that is signed."""
        return {
            "schema": SCHEMA_VERSION,
            "suites": {
                name: {
                    "states": [
                        {
                            "date": s.date,
                            "action": s.action,
                            "packages": dict(sorted(s.packages.items())),
                            "previous": s.previous,
                        }
                        for s in suite.states
                    ],
                    "files": dict(sorted(suite.files.items())),
                    "builds": suite.builds,
                }
                for name, suite in sorted(self.suites.items())
                if suite.states
            },
        }

    def payload(self) -> bytes:
        """The canonical JSON bytes of the history."""
        return (json.dumps(self.as_json(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: Any, what: str) -> History:
        """A history from its payload, refused unless it fits the schema."""
        validate(data, HISTORY_SCHEMA, what, "publish from a tree pfbuild wrote")
        history = cls()
        for name, suite in data["suites"].items():
            states = [
                State(s["date"], s["action"], dict(s["packages"]), s["previous"])
                for s in suite["states"]
            ]
            for n, state in enumerate(states):
                if state.previous is not None and state.previous >= n:
                    raise PfbuildError(
                        f"{what}: state {n} of {name} replaces a later state",
                        fix="publish from a tree pfbuild wrote",
                    )
            history.suites[name] = SuiteHistory(states, dict(suite["files"]), suite["builds"])
        return history


def sign_history(key: SigningKey, history: History) -> bytes:
    """The history as a DSSE envelope signed by the repository key."""
    return dsse.envelope_json(dsse.sign_envelope(key, history.payload(), PAYLOAD_TYPE))


def read_signed_history(path: Path, keyring: Path, fingerprint: str) -> History:
    """The history of a tree, believed only with a good signature of the pinned key."""
    payload = dsse.verify_envelope(
        path.read_bytes(), keyring, fingerprint, str(path), payload_type=PAYLOAD_TYPE
    )
    try:
        data = json.loads(payload)
    except ValueError:
        raise PfbuildError(f"the payload of {path} is not JSON") from None
    return History.from_json(data, str(path))


def keep_newest(packages: Mapping[str, str], keep: int) -> dict[str, str]:
    """The `keep` newest versions of every package name and architecture."""
    if keep < 1:
        raise PfbuildError(f"--keep {keep} would keep nothing", fix="pass --keep 1 or more")
    by_name: dict[tuple[str, str], list[str]] = {}
    for key in packages:
        name, _version, arch = split_key(key)
        by_name.setdefault((name, arch), []).append(key)
    kept: dict[str, str] = {}
    for keys in by_name.values():
        keys.sort(key=lambda k: Version(split_key(k)[1]), reverse=True)
        kept.update({k: packages[k] for k in keys[:keep]})
    return kept


def conflicts(history: SuiteHistory, new: Mapping[str, str]) -> list[str]:
    """New package keys the suite once published with other content."""
    return sorted(k for k, sha in new.items() if history.files.get(k, sha) != sha)


def format_build_env(packages: Mapping[str, str]) -> str:
    """The build environment as the history keeps it: sorted `name=version` words."""
    return " ".join(f"{name}={version}" for name, version in sorted(packages.items()))


def parse_build_env(text: str) -> dict[str, str]:
    """name -> version of a recorded build environment."""
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def record_builds(
    history: SuiteHistory, builds: Iterable[tuple[str, str, Mapping[str, str]]]
) -> None:
    """Remember the inputs of (source, version) builds published into the suite."""
    for source, version, inputs in builds:
        history.builds.setdefault(source, {})[version] = dict(sorted(inputs.items()))
