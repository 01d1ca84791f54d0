"""Facts about each target's toolchain, as data: checked in the report, never silently assumed."""

from __future__ import annotations

from dataclasses import dataclass

from builder.model.distro import Distribution


@dataclass(frozen=True)
class ToolchainLimit:
    """A property a target's toolchain cannot give, and why, in words for the report."""

    prop: str
    reason: str


TOOLCHAIN_LIMITS: dict[str, tuple[ToolchainLimit, ...]] = {
    "trixie": (
        ToolchainLimit(
            "cet",
            "trixie's glibc start files (crt1.o, crti.o) carry no IBT/SHSTK GNU property notes, "
            "so the linker drops the CET markers from every binary; the report shows instead "
            "that the code is instrumented (endbr64 landing pads from -fcf-protection)",
        ),
    ),
}
TARGET_NOTES: dict[str, str] = {
    "resolute": "resolute: Ubuntu's glibc start files carry IBT and SHSTK properties, so every "
    "binary built with -fcf-protection must carry both markers (readelf -n: "
    "'x86 feature: IBT, SHSTK'); a missing marker is a failure when CET is expected.",
}


def toolchain_limit(dist: Distribution, prop: str) -> ToolchainLimit | None:
    """The limit this target's toolchain puts on `prop`, if any."""
    return next((x for x in TOOLCHAIN_LIMITS.get(dist.name, ()) if x.prop == prop), None)


def toolchain_notes(dist: Distribution) -> tuple[str, ...]:
    """What this target's toolchain can and cannot give, in words for the report."""
    notes = [
        f"{dist.name}: {limit.prop} unavailable: {limit.reason}"
        for limit in TOOLCHAIN_LIMITS.get(dist.name, ())
    ]
    if dist.name in TARGET_NOTES:
        notes.append(TARGET_NOTES[dist.name])
    return tuple(notes)
