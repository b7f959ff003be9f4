#!/usr/bin/env bash
# -----------------------------------------------------------------------------
# with-postgres.sh — run a command against a throwaway PostgreSQL server.
#
# Usage:
#   scripts/with-postgres.sh CMD [ARGS...]   run CMD with DATABASE_URL pointing
#                                            at a fresh, temporary PostgreSQL
#   scripts/with-postgres.sh --check         only make sure the server binaries
#                                            are installed and print the version
#
# What it does (for CMD):
#   1. Finds the PostgreSQL server binaries (initdb, pg_ctl, postgres), looking
#      in $PG_BINDIR (if set), /usr/lib/postgresql/15/bin, $PATH and finally
#      /usr/lib/postgresql/*/bin (newest first).  If none are found it installs
#      them with apt-get (postgresql-15, falling back to "postgresql").
#   2. Creates a cluster in a fresh `mktemp -d` directory.  initdb/postgres
#      refuse to run as root, so when we are root they run as the "postgres"
#      system user (or a "hailuo-pg" system user we create if that is missing).
#      The cluster is tuned for speed, not durability (fsync etc. off), listens
#      only on 127.0.0.1 on a free TCP port and keeps its unix socket inside
#      the temp directory, so several instances can run side by side.
#   3. Starts it, creates roles "hailuo_owner" (login, createdb, createrole) and
#      "hailuo_app" (login only), database "hailuo" owned by "hailuo_owner", exports
#      DATABASE_URL=postgres://hailuo_app@127.0.0.1:PORT/hailuo (the app role) and
#      DATABASE_MIGRATE_URL=postgres://hailuo_owner@127.0.0.1:PORT/hailuo (the owner,
#      which `manage.py migrate` connects as) and runs CMD.  The superuser
#      "postgres" is used for nothing else.
#   4. Always stops the server and deletes the temp directory on exit —
#      normal exit, failure, Ctrl-C, SIGTERM or SIGHUP — and exits with CMD's
#      exit status.
#
# Environment:
#   KEEP_DATABASE_URL=1  if DATABASE_URL is already set, skip everything above
#                        and just run CMD against that database (and the owner of
#                        DATABASE_MIGRATE_URL, if set; see README "PostgreSQL").
#   PG_BINDIR=DIR        use the server binaries in DIR.
#
# Messages from this script go to stderr, prefixed with "with-postgres:", so
# CMD's stdout is left untouched.
# -----------------------------------------------------------------------------
set -euo pipefail

readonly PROG="with-postgres"
readonly DB_NAME="hailuo"
readonly DB_SUPERUSER="postgres"  # role created by initdb -U
readonly DB_OWNER="hailuo_owner"   # owns the database and its tables; migrations run as it
readonly DB_APP_ROLE="hailuo_app"  # what the app (and the test suite) connects as
readonly FALLBACK_OS_USER="hailuo-pg"

# Global state, initialised up front so `set -u` never trips in the traps.
PGBIN=""          # directory holding initdb/pg_ctl/postgres
PG_TMP=""         # throwaway temp dir (data dir, socket, logs)
PG_DATA=""        # $PG_TMP/data
PG_OS_USER=""     # OS user running the server ("" = ourselves)
SERVER_STARTED=0  # 1 once pg_ctl start was attempted
CHILD_PID=""      # pid of CMD while it runs
SIGNAL_COUNT=0    # bumped by the signal handler (see wait loop)
LAST_SIGNAL=0     # number of the last signal received

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $0 CMD [ARGS...]   run CMD with DATABASE_URL set to a throwaway PostgreSQL
       $0 --check         ensure PostgreSQL server binaries are installed
EOF
}

# -----------------------------------------------------------------------------
# 1. Locating / installing the server binaries
# -----------------------------------------------------------------------------

# has_server_bins DIR: true if DIR holds executable initdb, pg_ctl and postgres.
has_server_bins() {
    local dir=$1 bin
    [[ -n $dir && -d $dir ]] || return 1
    for bin in initdb pg_ctl postgres; do
        [[ -x $dir/$bin ]] || return 1
    done
}

# find_pg_bin: set PGBIN to the first directory with all server binaries.
find_pg_bin() {
    local candidates=() dir initdb_path
    [[ -n ${PG_BINDIR:-} ]] && candidates+=("$PG_BINDIR")
    # Debian/Ubuntu keep the server binaries outside PATH; prefer v15.
    candidates+=(/usr/lib/postgresql/15/bin)
    if initdb_path=$(command -v initdb 2>/dev/null); then
        candidates+=("$(dirname -- "$initdb_path")")
    fi
    # Any other installed major version, newest first.
    if compgen -G '/usr/lib/postgresql/*/bin' >/dev/null; then
        while IFS= read -r dir; do
            candidates+=("$dir")
        done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -rn)
    fi
    for dir in "${candidates[@]}"; do
        if has_server_bins "$dir"; then
            PGBIN=$dir
            return 0
        fi
    done
    return 1
}

# install_pg: install the server from Debian's packages (needs root or sudo).
install_pg() {
    local sudo=()
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL server binaries not found and apt-get is unavailable;" \
            "install PostgreSQL 15 yourself (or set PG_BINDIR)"
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 ||
            die "PostgreSQL server binaries not found; need root or sudo to install them"
        sudo=(sudo)
    fi

    log "PostgreSQL server binaries not found; installing them with apt-get"
    log "running: apt-get update"
    "${sudo[@]}" apt-get update

    # Prefer the versioned package; fall back to the distribution default if
    # this release does not carry postgresql-15.
    local pkg=postgresql-15
    if ! apt-cache show "$pkg" >/dev/null 2>&1; then
        log "package $pkg not available; falling back to 'postgresql'"
        pkg=postgresql
    fi
    log "running: apt-get install -y --no-install-recommends $pkg"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "$pkg"

    find_pg_bin || die "installed $pkg but still cannot find initdb/pg_ctl/postgres"
}

# ensure_pg_bin: find the binaries, installing them if needed (idempotent and
# fast when they are already there: just a few `test -x`).
ensure_pg_bin() {
    find_pg_bin || install_pg
}

# -----------------------------------------------------------------------------
# 2. Helpers for running things as the unprivileged server user
# -----------------------------------------------------------------------------

# pick_os_user: when root, choose (or create) the OS user that runs postgres.
pick_os_user() {
    [[ $(id -u) -eq 0 ]] || return 0   # not root: run everything as ourselves
    if id -u postgres >/dev/null 2>&1; then
        PG_OS_USER=postgres
    else
        if ! id -u "$FALLBACK_OS_USER" >/dev/null 2>&1; then
            log "creating system user $FALLBACK_OS_USER to run PostgreSQL"
            # Another instance may create it concurrently: re-check on failure.
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$FALLBACK_OS_USER" 2>/dev/null ||
                id -u "$FALLBACK_OS_USER" >/dev/null 2>&1 ||
                die "could not create system user $FALLBACK_OS_USER"
        fi
        PG_OS_USER=$FALLBACK_OS_USER
    fi
}

# as_pg [--log FILE] CMD...: run CMD as the server user (or directly when not
# root), with stdout+stderr sent to FILE if given.  Runs from the temp dir (or
# "/") so an inaccessible current directory (e.g. /root) does not upset the
# PostgreSQL tools.
#
# Everything happens in a subshell, output redirection included: a redirect on
# the function call itself would still be active if a signal trap fired while
# the function runs, and the trap's messages would vanish into the log file.
as_pg() {
    local dir=/ out=""
    if [[ $1 == --log ]]; then
        out=$2
        shift 2
    fi
    [[ -n $PG_TMP && -d $PG_TMP ]] && dir=$PG_TMP
    (
        cd "$dir"
        [[ -z $out ]] || exec >"$out" 2>&1
        if [[ -z $PG_OS_USER ]]; then
            exec "$@"
        elif command -v runuser >/dev/null 2>&1; then
            exec runuser -u "$PG_OS_USER" -- "$@"
        elif command -v setpriv >/dev/null 2>&1; then
            exec setpriv --reuid="$PG_OS_USER" \
                --regid="$(id -g "$PG_OS_USER")" --init-groups -- "$@"
        else
            # su takes a shell command line: quote every argument.
            exec su -s /bin/bash "$PG_OS_USER" -c "$(printf '%q ' "$@")"
        fi
    )
}

# free_port: print a currently unused TCP port on 127.0.0.1.
free_port() {
    if command -v python3 >/dev/null 2>&1 &&
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null; then
        return 0
    fi
    # Fallback without python: random high ports until one refuses connects.
    local port
    for _ in {1..50}; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "could not find a free TCP port"
}

# make_temp_dir: create PG_TMP, readable by the server user.  Falls back to
# /tmp if $TMPDIR is not reachable by that user or is so long that the unix
# socket path would exceed the ~107 byte limit.
make_temp_dir() {
    local base=${TMPDIR:-/tmp}
    base=${base%/}
    [[ -d $base ]] || base=/tmp
    # ".../with-postgres.XXXXXX/.s.PGSQL.65535" must stay below 107 bytes.
    if (( ${#base} + 40 > 100 )); then
        base=/tmp
    fi
    PG_TMP=$(mktemp -d "$base/$PROG.XXXXXX")
    if [[ -n $PG_OS_USER ]]; then
        chown "$PG_OS_USER:" "$PG_TMP"
        if ! as_pg test -w "$PG_TMP" && [[ $base != /tmp ]]; then
            rmdir "$PG_TMP"
            PG_TMP=$(mktemp -d "/tmp/$PROG.XXXXXX")
            chown "$PG_OS_USER:" "$PG_TMP"
        fi
        as_pg test -w "$PG_TMP" ||
            die "user $PG_OS_USER cannot write to $PG_TMP"
    fi
    PG_DATA=$PG_TMP/data
}

# show_log FILE: dump a log file to stderr (used when something failed).
show_log() {
    [[ -f $1 ]] || return 0
    log "---- $1 ----"
    sed 's/^/    /' "$1" >&2 || true
}

# -----------------------------------------------------------------------------
# 4. Cleanup and signal handling
# -----------------------------------------------------------------------------

# stop_server: stop the postmaster, escalating fast -> immediate -> SIGKILL.
stop_server() {
    [[ $SERVER_STARTED -eq 1 && -n $PG_DATA && -d $PG_DATA ]] || return 0
    # If pg_ctl itself was killed mid-start, the postmaster may still be
    # booting: give it a moment to write its pid file so we can stop it.
    local _
    for _ in {1..30}; do
        [[ -f $PG_DATA/postmaster.pid ]] && break
        sleep 0.1
    done
    [[ -f $PG_DATA/postmaster.pid ]] || return 0
    if as_pg --log /dev/null "$PGBIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 30; then
        return 0
    fi
    log "fast shutdown failed; trying immediate shutdown"
    if as_pg --log /dev/null "$PGBIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 10; then
        return 0
    fi
    local pid
    pid=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]]; then
        log "killing postmaster $pid"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# cleanup: EXIT trap.  Runs on every exit path (errexit included); keeps the
# exit status that triggered it.  (SC2317: shellcheck cannot tell that trap
# handlers are reachable.)
# shellcheck disable=SC2317
cleanup() {
    local rc=$?
    # Do not let a second Ctrl-C interrupt the cleanup half-way.
    trap '' INT TERM HUP
    set +e
    if [[ -n $CHILD_PID ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        # We are exiting while CMD still runs (e.g. an internal error).
        kill -TERM "$CHILD_PID" 2>/dev/null
    fi
    stop_server
    if [[ -n $PG_TMP && -d $PG_TMP ]]; then
        rm -rf -- "$PG_TMP"
    fi
    exit "$rc"
}

# on_signal NAME NUMBER: INT/TERM/HUP handler.
# shellcheck disable=SC2317
on_signal() {
    local name=$1 num=$2 _
    SIGNAL_COUNT=$((SIGNAL_COUNT + 1))
    LAST_SIGNAL=$num
    if [[ -n $CHILD_PID ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        # CMD is running.  A Ctrl-C in a terminal is delivered to CMD as well
        # (same process group), so give it a moment to exit on its own before
        # forwarding, to avoid hitting it with SIGINT twice.
        if [[ $name == INT ]]; then
            for _ in {1..20}; do
                kill -0 "$CHILD_PID" 2>/dev/null || break
                sleep 0.1
            done
        fi
        if kill -0 "$CHILD_PID" 2>/dev/null; then
            log "received SIG$name; forwarding it to the command"
            kill -s "$name" "$CHILD_PID" 2>/dev/null || true
        fi
        return 0  # the wait loop below collects CMD's exit status
    fi
    log "received SIG$name; cleaning up"
    exit $((128 + num))
}

# -----------------------------------------------------------------------------
# main
# -----------------------------------------------------------------------------

if [[ $# -eq 0 ]]; then
    usage
    exit 2
fi

case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --check)
        ensure_pg_bin
        log "server binaries in $PGBIN"
        "$PGBIN/postgres" --version
        exit 0
        ;;
    --)
        shift
        [[ $# -gt 0 ]] || { usage; exit 2; }
        ;;
esac

# 5. Developer escape hatch: use an existing server, no cleanup needed.
if [[ ${KEEP_DATABASE_URL:-} == 1 && -n ${DATABASE_URL:-} ]]; then
    log "KEEP_DATABASE_URL=1: using existing DATABASE_URL"
    exec "$@"
fi

# From here on, anything we create must be torn down.
trap cleanup EXIT
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM
trap 'on_signal HUP 1' HUP

ensure_pg_bin
pick_os_user
make_temp_dir

# --- 2. initdb ---------------------------------------------------------------
log "creating throwaway cluster in $PG_TMP (binaries: $PGBIN${PG_OS_USER:+, user: $PG_OS_USER})"
if ! as_pg --log "$PG_TMP/initdb.log" "$PGBIN/initdb" -D "$PG_DATA" -A trust \
    -U "$DB_SUPERUSER" --encoding=UTF8 --locale=C --no-sync; then
    show_log "$PG_TMP/initdb.log"
    die "initdb failed"
fi

# Throwaway cluster: trade durability for speed; only loopback TCP; socket in
# our temp dir so parallel instances never collide.  The port is given on the
# pg_ctl command line so a retry can pick another one.
cat >>"$PG_DATA/postgresql.conf" <<EOF

# ---- added by scripts/with-postgres.sh (throwaway test cluster) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_TMP'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

# --- 3. start ----------------------------------------------------------------
# Another process could grab the port between free_port and the bind; retry a
# few times with a fresh port if the start fails.
PORT=""
SERVER_STARTED=1
for attempt in 1 2 3; do
    PORT=$(free_port)
    if as_pg --log "$PG_TMP/pg_ctl.log" "$PGBIN/pg_ctl" start -D "$PG_DATA" \
        -w -t 60 -l "$PG_TMP/postgres.log" -o "-p $PORT"; then
        break
    fi
    if [[ $attempt -eq 3 ]]; then
        show_log "$PG_TMP/pg_ctl.log"
        show_log "$PG_TMP/postgres.log"
        die "could not start PostgreSQL"
    fi
    log "start on port $PORT failed; retrying with another port"
    stop_server   # in case it half-started
done
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') listening on 127.0.0.1:$PORT"

# The production layout (README "PostgreSQL"): the tables' owner runs migrations, the app runs
# as a role that owns nothing.  The owner may create databases (pytest-django's test database)
# and roles (the create_app_role test); the app role is a plain login.
if ! "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U "$DB_SUPERUSER" -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE ROLE $DB_OWNER LOGIN CREATEDB CREATEROLE" \
    -c "CREATE ROLE $DB_APP_ROLE LOGIN" >"$PG_TMP/roles.log" 2>&1; then
    show_log "$PG_TMP/roles.log"
    die "creating roles $DB_OWNER and $DB_APP_ROLE failed"
fi
if ! "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$DB_SUPERUSER" \
    -O "$DB_OWNER" "$DB_NAME" >"$PG_TMP/createdb.log" 2>&1; then
    show_log "$PG_TMP/createdb.log"
    die "createdb $DB_NAME failed"
fi

export DATABASE_URL="postgres://$DB_APP_ROLE@127.0.0.1:$PORT/$DB_NAME"
export DATABASE_MIGRATE_URL="postgres://$DB_OWNER@127.0.0.1:$PORT/$DB_NAME"
log "DATABASE_URL=$DATABASE_URL (the app role) DATABASE_MIGRATE_URL=$DATABASE_MIGRATE_URL (the owner)"

# --- run CMD -------------------------------------------------------------------
# CMD runs as a background job so that `wait` (unlike a foreground command) is
# interrupted by signals sent to this script and the handler can forward them.
#   * `<&0` keeps our stdin (bash would otherwise give it /dev/null);
#   * `trap - INT QUIT` undoes bash's "background jobs ignore SIGINT/SIGQUIT",
#     so Ctrl-C in a terminal still reaches CMD directly.
# It stays in our process group, so it can still use the terminal normally.
( trap - INT QUIT; exec "$@" ) <&0 &
CHILD_PID=$!

# `wait` returns early (status >128) whenever a trapped signal arrives; loop
# until it returns because CMD itself finished.  bash remembers the status of
# a finished job, so re-waiting an already-exited CMD returns its real status.
while :; do
    signals_before=$SIGNAL_COUNT
    rc=0
    wait "$CHILD_PID" || rc=$?
    [[ $SIGNAL_COUNT -eq $signals_before ]] && break
done
CHILD_PID=""

# If we were interrupted but CMD still exited cleanly, report the signal.
if [[ $LAST_SIGNAL -ne 0 && $rc -eq 0 ]]; then
    rc=$((128 + LAST_SIGNAL))
fi
exit "$rc"   # the EXIT trap stops the server and removes $PG_TMP
