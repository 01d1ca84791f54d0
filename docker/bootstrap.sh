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
#   LOG_FORMAT=text|json           stdout as Postfix writes it (default), or one JSON object per
#                                  line (time, host, severity, program, pid, queue_id, message)
#   POSTSCREEN=yes                 postscreen in front of smtpd on the smtp port, with the DNSBLs
#                                  of POSTSCREEN_DNSBL_SITES (default DEFAULT_DNSBL_SITES) and
#                                  POSTSCREEN_DNSBL_THRESHOLD (default 3); pregreeters dropped
#   SUBMISSION=yes, SUBMISSIONS=yes  mail submission on 587 (STARTTLS required) and 465 (implicit
#                                  TLS), SASL authentication required, everything else refused
#                                  there; SUBMISSION_PORT, SUBMISSIONS_PORT move them
#   SASL_TYPE=dovecot|cyrus, SASL_PATH   the SASL backend, e.g. inet:dovecot:12345 (dovecot's
#                                  auth service) or smtpd (Cyrus, /etc/postfix/sasl/smtpd.conf)
#   LINT=error|warn|off            the configuration gate at start and reload: an error-severity
#                                  finding refuses the configuration (error, the default), is
#                                  only logged (warn), or the gate does not run (off)
#   RELOAD_INTERVAL=seconds        `postfix reload` this often (default 86400), and whenever
#                                  main.cf, master.cf or the certificate files change (looked
#                                  at every RELOAD_POLL=5 s)
# `bootstrap.sh reload` (docker exec, or `postfix reload` in the container) regenerates, gates,
# checks and reloads at once; `bootstrap.sh check` runs the settings' validation and the gate on
# what would run, without starting anything (`bootstrap.sh settings`: the validation alone);
# any other command is run as is.
set -euo pipefail

readonly USER_DIR=/etc/postfix
readonly DEFAULTS_DIR=/etc/postfix.orig
readonly RUN_DIR=/run/pfbuild-postfix
readonly GATE_DIR=/usr/lib/pfbuild
readonly POSTCONF_D=/usr/share/pfbuild/postconf-d.txt
# The file in each generated directory that lists what it was made from (path, mtime, size,
# inode per line): the reload loop compares it with the files as they are now.
readonly SOURCES=pfbuild-sources
# Maintained lists only (no SORBS, WPBL or Lashback UBL: gone), each with the reply filter its
# operator documents: Spamhaus ZEN blocks alone, SpamCop and PSBL together; DNSWL's listed
# senders get a bonus.
readonly DEFAULT_DNSBL_SITES='zen.spamhaus.org=127.0.0.[2..11]*3 bl.spamcop.net=127.0.0.2*2 psbl.surriel.com=127.0.0.2*1 list.dnswl.org=127.0.[0..255].[1..3]*-2'
# postfix and postconf in /usr/local/sbin act on the generated configuration
# (postfix-command.sh); this script always names the directory itself, with the real ones.
readonly USER_PATH=${PATH}
PATH=/usr/sbin:/usr/bin:/sbin:/bin

KEYGEN_JOB=""

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
    case "${LINT:=error}" in
        error | warn | off) ;;
        *) die "LINT=${LINT} is not one of error, warn, off" ;;
    esac
    case "${POSTSCREEN:=no}" in
        yes | no) ;;
        *) die "POSTSCREEN=${POSTSCREEN} is not yes or no" ;;
    esac
    if [[ -n "${POSTSCREEN_DNSBL_THRESHOLD:-}" && ! "${POSTSCREEN_DNSBL_THRESHOLD}" =~ ^-?[0-9]+$ ]]; then
        die "POSTSCREEN_DNSBL_THRESHOLD=${POSTSCREEN_DNSBL_THRESHOLD} is not a whole number"
    fi
    local flag
    for flag in SUBMISSION SUBMISSIONS; do
        case "${!flag:=no}" in
            yes | no) ;;
            *) die "${flag}=${!flag} is not yes or no" ;;
        esac
    done
    case "${SASL_TYPE:=dovecot}" in
        dovecot | cyrus) ;;
        *) die "SASL_TYPE=${SASL_TYPE} is not dovecot or cyrus" ;;
    esac
    if [[ "${SUBMISSION}${SUBMISSIONS}" == *yes* && -z "${SASL_PATH:-}" ]]; then
        die "submission needs SASL_PATH, the SASL backend (e.g. inet:dovecot:12345)"
    fi
    case "${LOG_FORMAT:=text}" in
        text | json) ;;
        *) die "LOG_FORMAT=${LOG_FORMAT} is not text or json" ;;
    esac
    case "${SYSLOG_PROTO:=udp}" in
        udp | tcp) ;;
        *) die "SYSLOG_PROTO=${SYSLOG_PROTO} is not udp or tcp" ;;
    esac
    local name
    for name in RELOAD_INTERVAL RELOAD_POLL SMTP_PORT SUBMISSION_PORT SUBMISSIONS_PORT SYSLOG_PORT; do
        if [[ -n "${!name:-}" && ! "${!name}" =~ ^[1-9][0-9]*$ ]]; then
            die "${name}=${!name} is not a positive whole number"
        fi
    done
    if [[ -n "${TZ:-}" ]]; then
        [[ "${TZ}" =~ ^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$ && -f "/usr/share/zoneinfo/${TZ}" ]] ||
            die "TZ=${TZ} is not a time zone in /usr/share/zoneinfo"
        time_zone_rule >/dev/null
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

time_zone_rule() {
    # The POSIX TZ rule a TZif file ends with (RFC 8536): valid in every process, chrooted or
    # not, with no file to read and none to write (a read-only root has no /etc/localtime to
    # change, and the chrooted daemons could not read /usr/share/zoneinfo anyway).
    local rule
    rule=$(tail -n 1 "/usr/share/zoneinfo/${TZ}" | tr -d '\n')
    [[ -n "${rule}" ]] || die "TZ=${TZ}: its zone file has no POSIX rule"
    printf '%s' "${rule}"
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

write_self_signed() {
    # $1: the folder, $2: the key file, $3: the certificate file.
    install -d -m 0700 "$1"
    # P-256: a fraction of RSA's key generation time on first start, and every TLS 1.2+
    # client supports it.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=${HOSTNAME:-localhost}" -keyout "$2.new" -out "$3.new" 2>/dev/null
    chmod 0600 "$2.new"
    mv "$2.new" "$2"
    mv "$3.new" "$3"
}

make_self_signed() {
    # Sets TLS_CERT_FILE and TLS_KEY_FILE; a missing pair is made in the background (the
    # configuration only names the files), KEYGEN_JOB is what start() waits for.
    local dir key cert
    dir=$(self_signed_dir)
    key="${dir}/key.pem" cert="${dir}/cert.pem"
    if [[ ! -s "${key}" || ! -s "${cert}" ]]; then
        write_self_signed "${dir}" "${key}" "${cert}" &
        KEYGEN_JOB=$!
    fi
    say "warning: STARTTLS uses a self-signed certificate made on first start (${cert});" \
        "mount a real one and set TLS_CERT_FILE and TLS_KEY_FILE"
    TLS_CERT_FILE="${cert}" TLS_KEY_FILE="${key}"
}

source_files() {
    # $1: a generated directory. The files whose change makes the reload loop regenerate:
    # the user's main.cf and master.cf and the certificate files (symlinks followed: certbot
    # renews by pointing live/ at new archive/ files). Postfix notices changed lookup tables
    # by itself.
    printf '%s\n' "${USER_DIR}/main.cf" "${USER_DIR}/master.cf"
    postconf -c "$1" -hx smtpd_tls_chain_files smtpd_tls_cert_file smtpd_tls_key_file \
        2>/dev/null | tr ', ' '\n' | grep '^/' || true
}

file_states() {
    # One `path mtime size inode` line per file named on stdin; a missing file says so.
    local path
    while read -r path; do
        stat -L -c '%n %Y %s %i' "${path}" 2>/dev/null || printf '%s missing\n' "${path}"
    done
}

# --- the generated configuration directory ---------------------------------------------------

import_environment_value() {
    # Postfix clears the environment of what it starts: the preload and the time zone reach
    # the daemons only through import_environment. "{ }" protects the rule's commas.
    local item value=""
    for item in $(postconf -c "${USER_DIR}" -h import_environment); do
        case "${item}" in
            LD_PRELOAD=*) ;;
            TZ | TZ=*) [[ -n "${TZ:-}" ]] || value+="${item} " ;;
            *) value+="${item} " ;;
        esac
    done
    [[ -z "${TZ:-}" ]] || value+="{ TZ=$(time_zone_rule) } "
    [[ -z "${PRELOAD}" ]] || value+="LD_PRELOAD=${PRELOAD}"
    printf '%s' "${value% }"
}

uses_forwarder() {
    # Postfix's own maillog_file writes plain lines to stdout; a remote copy or JSON lines
    # need syslog(3) and the forwarder.
    [[ -n "${SYSLOG_HOST:-}" || "${LOG_FORMAT:-text}" == json ]]
}

override_settings() {
    # One `name=value` per line: what the container layers over the user's main.cf.
    if uses_forwarder; then
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
    if [[ "${POSTSCREEN:-no}" == yes ]]; then
        printf 'postscreen_access_list=permit_mynetworks\n'
        printf 'postscreen_dnsbl_sites=%s\n' "${POSTSCREEN_DNSBL_SITES:-${DEFAULT_DNSBL_SITES}}"
        printf 'postscreen_dnsbl_threshold=%s\n' "${POSTSCREEN_DNSBL_THRESHOLD:-3}"
        printf 'postscreen_dnsbl_action=enforce\npostscreen_greet_action=drop\n'
    fi
    # Last: an explicit POSTFIX_<name> wins over everything above.
    env | grep -E '^POSTFIX_[a-z0-9_]+=' | sed 's/^POSTFIX_//' | sort || true
}

enable_submission() {
    # $1: a generated directory, $2: the service (submission, submissions or a port),
    # $3: yes for implicit TLS, $4: the syslog name. Only authenticated clients, over TLS, may
    # send anything there.
    local dir=$1 service=$2 wrapper=$3 label=$4
    local -a settings=(
        "syslog_name=postfix/${label}"
        "smtpd_tls_wrappermode=${wrapper}"
        smtpd_tls_security_level=encrypt
        smtpd_tls_auth_only=yes
        smtpd_sasl_auth_enable=yes
        "smtpd_sasl_type=${SASL_TYPE}"
        "smtpd_sasl_path=${SASL_PATH}"
        "smtpd_client_restrictions=permit_sasl_authenticated,reject"
        "smtpd_relay_restrictions=permit_sasl_authenticated,reject"
        "smtpd_recipient_restrictions=permit_sasl_authenticated,reject"
        milter_macro_daemon_name=ORIGINATING
    )
    postconf -c "${dir}" -Me "${service}/inet=${service} inet n - n - - smtpd"
    postconf -c "${dir}" -Pe "${settings[@]/#/${service}/inet/}"
}

enable_postscreen() {
    # $1: a generated directory. The smtp service becomes postscreen, which hands the clients
    # that pass to smtpd's "pass" service (POSTSCREEN_README's master.cf); the smtp service's
    # own -o settings move to that smtpd.
    local dir=$1 service=${SMTP_PORT:-smtp}
    local -a overrides
    mapfile -t overrides < <(postconf -c "${dir}" -P "${service}/inet" 2>/dev/null |
        sed -E "s|^${service}/inet/([a-z0-9_]+) = |smtpd/pass/\1=|")
    postconf -c "${dir}" -M# "${service}/inet"
    # Not chrooted, as no service of Debian's master.cf is (the lock-down has no SYS_CHROOT).
    postconf -c "${dir}" -Me "${service}/inet=${service} inet n - n - 1 postscreen" \
        "smtpd/pass=smtpd pass - - n - - smtpd" \
        "dnsblog/unix=dnsblog unix - - n - 0 dnsblog" \
        "tlsproxy/unix=tlsproxy unix - - n - 0 tlsproxy"
    ((${#overrides[@]} == 0)) || postconf -c "${dir}" -Pe "${overrides[@]}"
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
    # A read-only configuration without master.cf runs with the image's.
    local master="${USER_DIR}/master.cf"
    [[ -e "${master}" ]] || master="${DEFAULTS_DIR}/master.cf"
    if [[ -n "${SMTP_PORT:-}" ]]; then
        sed -E "s/^smtp([[:space:]]+inet[[:space:]])/${SMTP_PORT}\1/" "${master}" >"${dir}/master.cf"
    else
        cp "${master}" "${dir}/master.cf"
    fi
    [[ "${POSTSCREEN:-no}" != yes ]] || enable_postscreen "${dir}"
    [[ "${SUBMISSION:-no}" != yes ]] ||
        enable_submission "${dir}" "${SUBMISSION_PORT:-submission}" no submission
    [[ "${SUBMISSIONS:-no}" != yes ]] ||
        enable_submission "${dir}" "${SUBMISSIONS_PORT:-submissions}" yes submissions
    # Postfix re-reads a file changed within the last second, dozing 0.3 s per try, until it
    # is older: that costs every Postfix program about two seconds right after a write.
    touch -d '2 seconds ago' "${dir}/main.cf" "${dir}/master.cf"
}

record_sources() {
    # $1: a generated directory: what it was made from, for the reload loop.
    source_files "$1" | file_states >"$1/${SOURCES}"
}

run_gate() {
    # $1: a generated directory. The gate's findings, one per line; exit 3 on an error.
    # Files named under $config_directory are read from the user's directory.
    # -S: the gate needs nothing outside the standard library (no site module to import).
    PYTHONPATH=${GATE_DIR} python3 -S -B -m builder.check.config --postconf-d "${POSTCONF_D}" \
        --tables "${USER_DIR}" --label "${USER_DIR} with the container's settings" "$1"
}

judge_gate() {
    # $1: the gate's output, $2: its exit status. Logs every finding; fails on an error unless
    # LINT=warn, with the reason in GATE_VERDICT (for `die` or a skipped reload).
    local out=$1 status=$2 first
    printf '%s\n' "${out}" | sed 's/^/bootstrap: gate: /' >&2
    ((status != 0)) || return 0
    if ((status == 3)); then
        first=$(printf '%s\n' "${out}" | grep -m 1 '^error ' || printf '%s' "${out}" | tail -n 1)
        GATE_VERDICT="the configuration gate refuses it: ${first}"
    else
        GATE_VERDICT="the configuration gate failed (exit ${status}): $(printf '%s' "${out}" | tail -n 1)"
    fi
    if [[ "${LINT}" == warn ]]; then
        say "warning: ${GATE_VERDICT} (going on: LINT=warn)"
        return 0
    fi
    return 1
}

gate() {
    # $1: a generated directory: run the gate on it and judge.
    [[ "${LINT}" != off ]] || return 0
    local out status=0
    out=$(run_gate "$1" 2>&1) || status=$?
    judge_gate "${out}" "${status}"
}

check_config() {
    # `postfix check` also parses master.cf: a broken one makes a reloaded master exit.
    postfix -c "$1" check 2>&1
}

prepare_quick_start() {
    # postfix-script's start-up checks (post-install create-missing, then a find over the
    # queue and configuration) take seconds; with an initialized queue they find nothing to
    # do. Postfix's own quick-start marker skips them, so this does the parts that matter:
    # the data directory's owner, the chroot copy of resolv.conf, hosts, localtime (Debian's
    # configure-instance.sh, when a service is chrooted: none of the image's is) and the
    # queue file name check (postsuper). A fresh, empty queue volume gets the full checks.
    local -a dirs
    mapfile -t dirs < <(postconf -c "${RUN_DIR}" -h queue_directory command_directory \
        daemon_directory data_directory mail_owner)
    own_data_directory "${dirs[3]}" "${dirs[4]}"
    local queue=${dirs[0]} sync=/usr/lib/postfix/configure-instance.sh
    [[ -d "${queue}/public" && -d "${queue}/private" && -d "${queue}/maildrop" ]] || return 0
    install -d -m 0755 "${queue}/pid"
    if [[ -x "${sync}" ]] && postconf -c "${RUN_DIR}" -Fh '*/*/chroot' | grep -qx y; then
        MAIL_CONFIG="${RUN_DIR}" config_directory="${RUN_DIR}" queue_directory="${queue}" \
            command_directory="${dirs[1]}" daemon_directory="${dirs[2]}" "${sync}" >/dev/null ||
            return 0
    fi
    postsuper -c "${RUN_DIR}" || return 0
    touch "${queue}/quick-start"
}

own_data_directory() {
    # $1: data_directory, $2: mail_owner. An empty folder mounted on /var/lib/postfix belongs
    # to root; Postfix's daemons write there as the mail owner, and postfix-script only warns
    # before the master gives up.
    [[ "$(stat -c %U "$1")" == "$2" ]] || chown "$2:" "$1"
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
    record_sources "${generation}"
    printf '%s' "${generation}"
}

reload_now() {
    local why=$1 candidate errors
    candidate=$(new_generation)
    if ! gate "${candidate}"; then
        say "reload (${why}) skipped: ${GATE_VERDICT} (set LINT=warn to reload anyway)"
        rm -rf "${candidate}"
        return 1
    fi
    if ! errors=$(check_config "${candidate}"); then
        say "reload (${why}) skipped: postfix check failed: $(printf '%s' "${errors}" | tail -n 1)"
        rm -rf "${candidate}"
        return 1
    fi
    switch_config "${candidate}"
    say "reload (${why})"
    postfix -c "${RUN_DIR}" reload
}

locked_reload() {
    # The reload loop and `postfix reload` from docker exec must not switch at the same time.
    exec {lock}>"${RUN_DIR}.lock"
    flock "${lock}"
    reload_now "$@"
}

reload_loop() {
    local interval=${RELOAD_INTERVAL:-86400} poll=${RELOAD_POLL:-5} last now refused=""
    local recorded="${RUN_DIR}/${SOURCES}" state
    poll=$((interval < poll ? interval : poll))
    last=$(date +%s)
    while sleep "${poll}"; do
        now=$(date +%s)
        # The files the running configuration was made from, as they are now.
        state=$(cut -d ' ' -f 1 "${recorded}" | file_states)
        if [[ "${state}" != "$(cat "${recorded}")" ]]; then
            # A refused change is not tried again (and logged again) until the files change.
            [[ "${state}" != "${refused}" ]] || continue
            if (locked_reload "configuration or certificate files changed"); then
                refused=""
            else
                refused=${state}
            fi
            last=${now}
        elif ((now - last >= interval)); then
            (locked_reload "every ${interval} s") || true
            last=${now}
        fi
    done
}

# --- main ------------------------------------------------------------------------------------

start() {
    check_settings
    copy_missing_defaults
    PRELOAD=$(preload_path)
    if [[ -z "${TLS_CERT_FILE:-}" ]] && ! user_has_certificate; then
        make_self_signed
    fi
    export MALLOC TLS_CERT_FILE TLS_KEY_FILE PRELOAD
    rm -rf "${RUN_DIR}" "${RUN_DIR}".*
    local generation gate_job="" gate_status=0
    generation="${RUN_DIR}.$(date +%s%N)"
    generate_config "${generation}"
    # The gate runs while the rest gets ready (it costs a python3 start); nothing listens
    # before its verdict.
    if [[ "${LINT}" != off ]]; then
        run_gate "${generation}" >/run/pfbuild-gate.out 2>&1 &
        gate_job=$!
    fi
    switch_config "${generation}"
    # No full `postfix check` here (it takes seconds): postfix start-fg still refuses a
    # configuration that postconf cannot parse, with Postfix's own one-line reason.
    if uses_forwarder; then
        /usr/local/sbin/syslog-forward.pl /dev/log "${SYSLOG_HOST:-}" "${SYSLOG_PORT:-514}" \
            "${SYSLOG_PROTO}" "${HOSTNAME:-localhost}" "${LOG_FORMAT}" &
        local tries=0
        until [[ -S /dev/log ]] || ((++tries > 50)); do sleep 0.1; done
    fi
    prepare_quick_start
    if [[ -n "${gate_job}" ]]; then
        wait "${gate_job}" || gate_status=$?
        judge_gate "$(cat /run/pfbuild-gate.out)" "${gate_status}" ||
            die "${GATE_VERDICT}; fix it (see the lines above), or start anyway with LINT=warn"
        rm -f /run/pfbuild-gate.out
    fi
    if [[ -n "${KEYGEN_JOB}" ]]; then
        wait "${KEYGEN_JOB}" || die "could not make the self-signed certificate in $(self_signed_dir)"
    fi
    # The reload loop compares the files with this record: made after the key is written,
    # beside Postfix's start.
    {
        record_sources "${generation}"
        reload_loop
    } &
    say "starting postfix (MALLOC=${MALLOC}${PRELOAD:+, LD_PRELOAD=${PRELOAD}})"
    # The master becomes PID 1 (postfix-script execs it) and stops cleanly on SIGTERM.
    exec postfix -c "${RUN_DIR}" start-fg
}

certificate_for_reload() {
    # The certificate start() chose: the mounted one, the user's, or the self-signed one.
    if [[ -z "${TLS_CERT_FILE:-}" ]] && ! user_has_certificate; then
        TLS_CERT_FILE="$(self_signed_dir)/cert.pem" TLS_KEY_FILE="$(self_signed_dir)/key.pem"
    fi
}

check() {
    # What would run, judged without starting or changing anything: the settings, the gate,
    # and in a running container `postfix check` too.
    check_settings
    [[ -e "${USER_DIR}/main.cf" ]] ||
        die "no main.cf in ${USER_DIR}: a container would start with the image's defaults"
    PRELOAD=$(preload_path)
    certificate_for_reload
    local dir status=0
    dir=$(mktemp -d /tmp/pfbuild-check.XXXXXX)
    # shellcheck disable=SC2064 # expanded now: the local is gone when the trap runs
    trap "rm -rf '${dir}'" EXIT
    if ! generate_config "${dir}/generation" 2>"${dir}/errors"; then
        say "postconf cannot read ${USER_DIR}/main.cf: $(tail -n 1 "${dir}/errors")"
        cp "${USER_DIR}/main.cf" "${dir}/generation/main.cf"
        [[ ! -e "${USER_DIR}/master.cf" ]] || cp "${USER_DIR}/master.cf" "${dir}/generation/"
        status=1
    fi
    if ! gate "${dir}/generation"; then
        say "${GATE_VERDICT}"
        status=3
    fi
    if [[ -e "${RUN_DIR}" ]] && ((status == 0)); then
        check_config "${dir}/generation" >&2 || status=1
    fi
    if ((status == 0)); then
        say "check passed"
    fi
    return "${status}"
}

case "${1:-start}" in
    start) start ;;
    check) check ;;
    settings) check_settings ;;
    reload)
        check_settings
        PRELOAD=$(preload_path)
        certificate_for_reload
        locked_reload "requested"
        ;;
    *)
        PATH=${USER_PATH}
        exec "$@"
        ;;
esac
