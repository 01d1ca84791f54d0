#!/bin/bash
# Healthy when the smtp listener answers 220. Only bash is needed (its /dev/tcp), and the
# probe says QUIT, so each check logs one connect and one disconnect line, nothing more.
set -euo pipefail
host=${HEALTHCHECK_HOST:-127.0.0.1}
port=${SMTP_PORT:-25}
exec 3<>"/dev/tcp/${host}/${port}"
IFS= read -r -t 5 banner <&3
printf 'QUIT\r\n' >&3
IFS= read -r -t 5 _ <&3 || true
exec 3<&-
if [[ "${banner}" != 220* ]]; then
    printf 'healthcheck: %s:%s answered %q, not 220\n' "${host}" "${port}" "${banner}"
    exit 1
fi
printf 'healthcheck: %s:%s answered 220\n' "${host}" "${port}"
