#!/bin/bash
# postfix, postconf, postqueue and postsuper as an admin types them in the container (each a
# symlink to this script in /usr/local/sbin, ahead of /usr/sbin in PATH). The master runs from
# the configuration bootstrap.sh generates (/etc/postfix plus the container's settings), so:
#   postfix reload | postfix check    bootstrap.sh reload | check: regenerate from /etc/postfix,
#                                     gate, `postfix check`, then reload the master
#   postfix <anything else>           on the running configuration
#   postconf -e | -X | -# ...         edits /etc/postfix, the admin's files (effective on
#                                     `postfix reload`, or within RELOAD_POLL seconds)
#   postconf <a read>, postqueue, postsuper   on the running configuration
# With -c, MAIL_CONFIG, or no generated configuration (the container is not running Postfix),
# the real command runs unchanged.
set -euo pipefail

readonly RUN_DIR=/run/pfbuild-postfix
name=${0##*/}
real=/usr/sbin/${name}

passthrough() { exec "${real}" "$@"; }

warn_overridden() {
    # An edit the container's POSTFIX_<name> variable overrides would never take effect.
    local operand name variable
    for operand in "$@"; do
        name=${operand%%=*}
        name=${name//[[:space:]]/}
        [[ "${name}" =~ ^[a-z0-9_]+$ ]] || continue
        variable=POSTFIX_${name}
        [[ -z "${!variable+set}" ]] || printf 'postconf: warning: %s is set in the container'"'"'s environment and overrides %s in /etc/postfix/main.cf\n' "${variable}" "${name}" >&2
    done
}

[[ -x "${real}" ]] || {
    printf '%s: error: %s is not installed\n' "${name}" "${real}" >&2
    exit 127
}
[[ -z "${MAIL_CONFIG:-}" && -e "${RUN_DIR}/main.cf" ]] || passthrough "$@"

# Option letters of each command that take an argument, for getopts.
case "${name}" in
    postfix) spec=':c:Dv' ;;
    postconf) spec=':aAbc:C:dDeEfFhHlmMno:pPtTvxX#' ;;
    postqueue) spec=':c:fi:jpQ:r:s:vt' ;;
    postsuper) spec=':c:d:e:fh:H:psSr:vz' ;;
    *) passthrough "$@" ;;
esac

edit=no
OPTIND=1
while getopts "${spec}" option "$@" 2>/dev/null; do
    case "${option}" in
        c) passthrough "$@" ;;
        e | X | '#') edit=yes ;;
    esac
done
command=${!OPTIND:-}

case "${name}" in
    postfix)
        case "${command}" in
            reload | check) exec /usr/local/sbin/bootstrap.sh "${command}" ;;
            *) exec "${real}" -c "${RUN_DIR}" "$@" ;;
        esac
        ;;
    postconf)
        [[ "${edit}" == yes ]] || exec "${real}" -c "${RUN_DIR}" "$@"
        "${real}" "$@"
        warn_overridden "${@:OPTIND}"
        ;;
    *) exec "${real}" -c "${RUN_DIR}" "$@" ;;
esac
