#!/bin/bash
# Start Postfix in a container. /etc/postfix (a volume) is never written to except to add
# default files that are missing; container settings go into a generated configuration
# directory layered on top of it, which the master runs from (postfix -c).
#
# Environment:
#   MALLOC=mimalloc|jemalloc|none  allocator preloaded into every Postfix process (default mimalloc)
#   TZ=Area/City                   time zone
#   SMTP_PORT=N                    the smtp service listens on port N instead of 25
#   POSTFIX_<parameter>=value      a main.cf setting layered over /etc/postfix/main.cf
#   TLS_CERT_FILE, TLS_KEY_FILE    mounted certificate chain and key (e.g. /etc/letsencrypt)
#   SYSLOG_HOST[, SYSLOG_PORT=514, SYSLOG_PROTO=udp|tcp]  also send the log to a remote syslog
#   RELOAD_INTERVAL=seconds        `postfix reload` this often (default 86400) and when the
#                                  certificate files change (looked at every RELOAD_POLL=30 s)
# `bootstrap.sh reload` (through docker exec) regenerates, checks and reloads at once;
# `bootstrap.sh check` only validates the settings above; any other command is run as is.
set -euo pipefail

readonly USER_DIR=/etc/postfix
readonly DEFAULTS_DIR=/etc/postfix.orig
readonly RUN_DIR=/run/pfbuild-postfix

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() {
    printf 'bootstrap: error: %s\n' "$*" >&2
    exit 2
}

# --- validation: every bad setting stops the container with one line -----------------------

check_settings() {
    case "${MALLOC:=mimalloc}" in
        mimalloc | jemalloc | none) ;;
        *) die "MALLOC=${MALLOC} is not one of mimalloc, jemalloc, none" ;;
    esac
    case "${SYSLOG_PROTO:=udp}" in
        udp | tcp) ;;
        *) die "SYSLOG_PROTO=${SYSLOG_PROTO} is not udp or tcp" ;;
    esac
    local name
    for name in RELOAD_INTERVAL RELOAD_POLL SMTP_PORT SYSLOG_PORT; do
        if [[ -n "${!name:-}" && ! "${!name}" =~ ^[1-9][0-9]*$ ]]; then
            die "${name}=${!name} is not a positive whole number"
        fi
    done
    if [[ -n "${TZ:-}" && ! -f "/usr/share/zoneinfo/${TZ}" ]]; then
        die "TZ=${TZ} is not a time zone in /usr/share/zoneinfo"
    fi
    if [[ -n "${TLS_CERT_FILE:-}${TLS_KEY_FILE:-}" ]]; then
        [[ -n "${TLS_CERT_FILE:-}" && -n "${TLS_KEY_FILE:-}" ]] ||
            die "set both TLS_CERT_FILE and TLS_KEY_FILE, or neither"
        [[ -r "${TLS_CERT_FILE}" ]] || die "TLS_CERT_FILE=${TLS_CERT_FILE} is not readable"
        [[ -r "${TLS_KEY_FILE}" ]] || die "TLS_KEY_FILE=${TLS_KEY_FILE} is not readable"
    fi
    while IFS='=' read -r name _; do
        [[ "${name#POSTFIX_}" =~ ^[a-z0-9_]+$ ]] ||
            die "${name} does not name a Postfix parameter (POSTFIX_ then lower-case letters)"
    done < <(env | grep -E '^POSTFIX_[^=]*=' || true)
}

# --- the user's configuration directory ------------------------------------------------------

copy_missing_defaults() {
    # cp -n never replaces a file the user put there; a read-only volume is not an error.
    if [[ ! -e "${USER_DIR}/main.cf" ]]; then
        say "no main.cf in ${USER_DIR}: installing the image defaults"
    fi
    cp -a -n "${DEFAULTS_DIR}/." "${USER_DIR}/" 2>/dev/null ||
        say "warning: could not add missing default files to ${USER_DIR} (read-only?)"
    [[ -e "${USER_DIR}/main.cf" ]] || die "${USER_DIR}/main.cf is missing and cannot be created"
}

set_time_zone() {
    [[ -n "${TZ:-}" ]] || return 0
    # The chrooted daemons read /etc/localtime (copied into the chroot by postfix-script).
    ln -sf "/usr/share/zoneinfo/${TZ}" /etc/localtime
    printf '%s\n' "${TZ}" >/etc/timezone
}

# --- allocator -------------------------------------------------------------------------------

library_by_soname() {
    # The path ldconfig knows for a SONAME pattern: no architecture directory is hard-coded.
    ldconfig -p | awk -v re="^$1$" '$1 ~ re { print $NF; exit }'
}

preload_path() {
    local path=""
    case "${MALLOC}" in
        mimalloc) path=$(library_by_soname 'libmimalloc-secure\.so\.[0-9]+') ;;
        jemalloc) path=$(library_by_soname 'libjemalloc\.so\.[0-9]+') ;;
        none) return 0 ;;
    esac
    [[ -n "${path}" ]] || die "MALLOC=${MALLOC}: its library is not installed in this image"
    printf '%s' "${path}"
}

# --- TLS -------------------------------------------------------------------------------------

user_has_certificate() {
    [[ -n "$(postconf -c "${USER_DIR}" -h smtpd_tls_chain_files smtpd_tls_cert_file | tr -d '\n')" ]]
}

self_signed_dir() {
    # Kept with the configuration (a volume) so it survives replacing the container; a
    # read-only /etc/postfix gets one per container instead. Not in /var/lib/postfix, whose
    # files `postfix check` wants owned by postfix: the key stays root's.
    if [[ -d "${USER_DIR}/selfsigned" || -w "${USER_DIR}" ]]; then
        printf '%s' "${USER_DIR}/selfsigned"
    else
        printf '%s' /run/pfbuild-selfsigned
    fi
}

make_self_signed() {
    local dir key cert
    dir=$(self_signed_dir)
    key="${dir}/key.pem" cert="${dir}/cert.pem"
    if [[ ! -s "${key}" || ! -s "${cert}" ]]; then
        install -d -m 0700 "${dir}"
        # P-256: a fraction of RSA's key generation time on first start, and every TLS 1.2+
        # client supports it.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj "/CN=${HOSTNAME:-localhost}" -keyout "${key}.new" -out "${cert}.new" 2>/dev/null
        chmod 0600 "${key}.new"
        mv "${key}.new" "${key}"
        mv "${cert}.new" "${cert}"
    fi
    say "warning: STARTTLS uses a self-signed certificate made on first start (${cert});" \
        "mount a real one and set TLS_CERT_FILE and TLS_KEY_FILE"
    TLS_CERT_FILE="${cert}" TLS_KEY_FILE="${key}"
}

watched_files() {
    # The certificate files whose change triggers a reload (symlinks followed: certbot renews
    # by pointing live/ at new archive/ files).
    local files
    files=$(postconf -c "${RUN_DIR}" -hx smtpd_tls_chain_files smtpd_tls_cert_file \
        smtpd_tls_key_file 2>/dev/null | tr ', ' '\n\n' | grep '^/' || true)
    [[ -n "${files}" ]] && stat -L -c '%n %Y %s %i' ${files} 2>/dev/null || true
}

# --- the generated configuration directory ---------------------------------------------------

import_environment_value() {
    local item value=""
    for item in $(postconf -c "${USER_DIR}" -h import_environment); do
        [[ "${item}" == LD_PRELOAD=* ]] || value+="${item} "
    done
    [[ -z "${PRELOAD}" ]] || value+="LD_PRELOAD=${PRELOAD}"
    printf '%s' "${value% }"
}

override_settings() {
    # One `name=value` per line: what the container layers over the user's main.cf.
    if [[ -n "${SYSLOG_HOST:-}" ]]; then
        # syslog(3) to /dev/log, where syslog-forward.pl copies each line to stdout and remote.
        printf 'maillog_file=\n'
    else
        printf 'maillog_file=/dev/stdout\n'
    fi
    printf 'import_environment=%s\n' "$(import_environment_value)"
    if [[ -n "${TLS_CERT_FILE:-}" ]]; then
        printf 'smtpd_tls_chain_files=\nsmtpd_tls_cert_file=%s\nsmtpd_tls_key_file=%s\n' \
            "${TLS_CERT_FILE}" "${TLS_KEY_FILE}"
    fi
    env | grep -E '^POSTFIX_[a-z0-9_]+=' | sed 's/^POSTFIX_//' | sort || true
}

generate_config() {
    # $1: a new directory to fill; it goes live only through switch_config.
    local dir=$1
    install -d -m 0755 "${dir}"
    cp "${USER_DIR}/main.cf" "${dir}/main.cf"
    # postconf -e replaces a setting in place: appending would make Postfix warn about
    # overriding earlier entries. This edits the copy only, never the user's file.
    local -a settings
    mapfile -t settings < <(override_settings)
    postconf -c "${dir}" -e "${settings[@]}"
    if [[ -n "${SMTP_PORT:-}" ]]; then
        sed -E "s/^smtp([[:space:]]+inet[[:space:]])/${SMTP_PORT}\1/" \
            "${USER_DIR}/master.cf" >"${dir}/master.cf"
    else
        cp "${USER_DIR}/master.cf" "${dir}/master.cf"
    fi
    # Postfix re-reads a file changed within the last second, dozing 0.3 s per try, until it
    # is older: that costs every Postfix program about two seconds right after a write.
    touch -d '2 seconds ago' "${dir}/main.cf" "${dir}/master.cf"
}

check_config() {
    # `postfix check` also parses master.cf: a broken one makes a reloaded master exit.
    postfix -c "$1" check 2>&1
}

prepare_quick_start() {
    # postfix-script's start-up checks (post-install create-missing, then a find over the
    # queue and configuration) take seconds; with an initialized queue they find nothing to
    # do. Postfix's own quick-start marker skips them, so this does the parts that matter:
    # the chroot copy of resolv.conf, hosts, localtime (Debian's configure-instance.sh) and
    # the queue file name check (postsuper). A fresh, empty queue volume gets the full checks.
    local -a dirs
    mapfile -t dirs < <(postconf -c "${RUN_DIR}" -h queue_directory command_directory daemon_directory)
    local queue=${dirs[0]} sync=/usr/lib/postfix/configure-instance.sh
    [[ -d "${queue}/public" && -d "${queue}/private" && -d "${queue}/maildrop" ]] || return 0
    install -d -m 0755 "${queue}/pid"
    if [[ -x "${sync}" ]]; then
        MAIL_CONFIG="${RUN_DIR}" config_directory="${RUN_DIR}" queue_directory="${queue}" \
            command_directory="${dirs[1]}" daemon_directory="${dirs[2]}" "${sync}" >/dev/null ||
            return 0
    fi
    postsuper -c "${RUN_DIR}" || return 0
    touch "${queue}/quick-start"
}

# --- reloads ---------------------------------------------------------------------------------

switch_config() {
    # RUN_DIR is a symlink to one generation; renaming a new link over it is atomic, so a
    # daemon the master starts meanwhile reads the old configuration or the new one.
    local generation=$1 old
    old=$(readlink "${RUN_DIR}" || true)
    ln -sfn "${generation}" "${RUN_DIR}.link"
    mv -T "${RUN_DIR}.link" "${RUN_DIR}"
    [[ -z "${old}" || "${old}" == "${generation}" ]] || rm -rf "${old}"
}

new_generation() {
    local generation
    generation="${RUN_DIR}.$(date +%s%N)"
    generate_config "${generation}"
    printf '%s' "${generation}"
}

reload_now() {
    local why=$1 candidate errors
    candidate=$(new_generation)
    if ! errors=$(check_config "${candidate}"); then
        say "reload (${why}) skipped: postfix check failed: $(printf '%s' "${errors}" | tail -n 1)"
        rm -rf "${candidate}"
        return 1
    fi
    switch_config "${candidate}"
    say "reload (${why})"
    postfix -c "${RUN_DIR}" reload
}

reload_loop() {
    local interval=${RELOAD_INTERVAL:-86400} poll=${RELOAD_POLL:-30} last now certs seen
    poll=$((interval < poll ? interval : poll))
    last=$(date +%s)
    seen=$(watched_files)
    while sleep "${poll}"; do
        now=$(date +%s)
        certs=$(watched_files)
        if [[ "${certs}" != "${seen}" ]]; then
            reload_now "certificate files changed" || true
            seen=$(watched_files)
            last=${now}
        elif ((now - last >= interval)); then
            reload_now "every ${interval} s" || true
            last=${now}
        fi
    done
}

# --- main ------------------------------------------------------------------------------------

start() {
    check_settings
    copy_missing_defaults
    set_time_zone
    PRELOAD=$(preload_path)
    if [[ -z "${TLS_CERT_FILE:-}" ]] && ! user_has_certificate; then
        make_self_signed
    fi
    export MALLOC TLS_CERT_FILE TLS_KEY_FILE PRELOAD
    rm -rf "${RUN_DIR}" "${RUN_DIR}".*
    switch_config "$(new_generation)"
    # No full `postfix check` here (it takes seconds): postfix start-fg still refuses a
    # configuration that postconf cannot parse, with Postfix's own one-line reason.
    if [[ -n "${SYSLOG_HOST:-}" ]]; then
        /usr/local/sbin/syslog-forward.pl /dev/log "${SYSLOG_HOST}" "${SYSLOG_PORT:-514}" \
            "${SYSLOG_PROTO}" "${HOSTNAME:-localhost}" &
        local tries=0
        until [[ -S /dev/log ]] || ((++tries > 50)); do sleep 0.1; done
    fi
    prepare_quick_start
    reload_loop &
    say "starting postfix (MALLOC=${MALLOC}${PRELOAD:+, LD_PRELOAD=${PRELOAD}})"
    # The master becomes PID 1 (postfix-script execs it) and stops cleanly on SIGTERM.
    exec postfix -c "${RUN_DIR}" start-fg
}

case "${1:-start}" in
    start) start ;;
    check) check_settings ;;
    reload)
        check_settings
        PRELOAD=$(preload_path)
        if [[ -z "${TLS_CERT_FILE:-}" ]] && ! user_has_certificate; then
            TLS_CERT_FILE="$(self_signed_dir)/cert.pem" TLS_KEY_FILE="$(self_signed_dir)/key.pem"
        fi
        reload_now "requested"
        ;;
    *) exec "$@" ;;
esac
