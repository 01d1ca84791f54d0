#!/usr/bin/env bash
# One-time (idempotent) set-up shared by ./pfbuild and ./run-tests: a virtual environment with
# pfbuild installed, then `pfbuild doctor --fix` for the Debian tools, the build user and dockerd.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$top/.venv"

if [ "$(id -u)" -ne 0 ]; then
    echo "pfbuild set-up: run as root (it installs Debian packages and starts dockerd)" >&2
    exit 3
fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv
fi

stamp="$venv/.pfbuild-stamp"
want=$(sha256sum "$top/pyproject.toml" | cut -d' ' -f1)
if [ ! -x "$venv/bin/pfbuild" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$top[test]"
    echo "$want" > "$stamp"
fi

# Quiet when all is well; the full table (and the one-line reason) when something is missing.
if ! "$venv/bin/pfbuild" -q doctor --fix > "$venv/doctor.txt"; then
    cat "$venv/doctor.txt" >&2
    exit 3
fi
