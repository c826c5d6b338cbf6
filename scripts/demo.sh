#!/usr/bin/env bash
# The demo: a private Dovecot filled with sample and bulk mail, mounted with imapfs.
#
#   scripts/demo.sh          start (or restart) the demo; mounts at /tmp/imapfs-demo/mnt
#   scripts/demo.sh stop     unmount and stop the server
#   scripts/demo.sh status   say whether it is running
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEMO=/tmp/imapfs-demo
SERVER=$DEMO/server
MNT=$DEMO/mnt
PIDFILE=$DEMO/fixture.pid
LOG=$DEMO/fixture.log

is_mounted() {
    grep -qs " $MNT " /proc/mounts
}

# PID from $PIDFILE if that process is still our fixture.
fixture_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "imapfs-fixture serve" || return 1
    echo "$pid"
}

wait_gone() { # PID SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

stop() {
    if is_mounted; then
        echo "demo: unmounting $MNT"
        fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || {
            echo "demo: mount busy; detaching it lazily" >&2
            fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" || true
        }
    fi
    # imapfs exits after the unmount; one that hangs on a dead server is ended here.
    local pid
    for pid in $(pgrep -f "imapfs .*$MNT" 2>/dev/null || true); do
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$MNT"; then
            wait_gone "$pid" 5 || kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    if pid=$(fixture_pid); then
        echo "demo: stopping the mail server (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" 15; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # A Dovecot left behind by a killed fixture.
    local master
    master=$(cat "$SERVER/run/master.pid" 2>/dev/null || true)
    if [[ $master =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$master/cmdline" 2>/dev/null | grep -q "$SERVER/dovecot.conf"; then
        kill -TERM "$master" 2>/dev/null || true
        wait_gone "$master" 5 || kill -KILL "$master" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    rm -rf "$SERVER"
}

status() {
    if pid=$(fixture_pid); then
        echo "demo: mail server running (pid $pid); $(grep '^SOURCE=' "$SERVER/env" 2>/dev/null || true)"
    else
        echo "demo: mail server not running"
    fi
    if is_mounted; then echo "demo: mounted at $MNT"; else echo "demo: not mounted"; fi
}

start() {
    bash scripts/setup.sh
    stop

    echo "demo: building imapfs and the fixture (release)"
    cargo build --release
    cargo build --release -p imapfs-fixture
    local target
    target=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    local imapfs=$target/release/imapfs
    local fixture=$target/release/imapfs-fixture

    mkdir -p "$DEMO" "$MNT"
    echo "demo: starting a private Dovecot with sample mail and 200 bulk messages"
    nohup "$fixture" serve --dir "$SERVER" --samples --messages 200 >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    disown || true
    local i
    for ((i = 0; i < 600; i++)); do
        [[ -f $SERVER/env ]] && break
        # Until nohup has exec'd the fixture its command line is not ours yet: only a
        # process that is gone counts as a failure here.
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            echo "demo: the mail server failed to start:" >&2
            cat "$LOG" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [[ ! -f $SERVER/env ]]; then
        echo "demo: the mail server did not become ready; see $LOG" >&2
        exit 1
    fi
    # shellcheck disable=SC1091
    source "$SERVER/env"

    echo "demo: mounting imaps://$USER@127.0.0.1:$IMAPS_PORT at $MNT"
    IMAPFS_PASSWORD="$PASSWORD" "$imapfs" --ca-file "$CA_FILE" \
        "imaps://$USER@127.0.0.1:$IMAPS_PORT" "$MNT"
    for ((i = 0; i < 300; i++)); do
        is_mounted && break
        sleep 0.1
    done
    if ! is_mounted; then
        echo "demo: imapfs did not mount $MNT" >&2
        exit 1
    fi

    local first
    first=$(ls -1 "$MNT/INBOX" 2>/dev/null | head -n 1 || true)
    cat <<EOT

imapfs is mounted at $MNT
  account:  imaps://$USER@127.0.0.1:$IMAPS_PORT (password: $PASSWORD, CA: $CA_FILE)
  server:   $SERVER (log: $LOG_FILE)

Try:
  ls $MNT
  ls $MNT/INBOX | head
  ls "$MNT/INBOX/$first"
  cat "$MNT/INBOX/$first/body.txt"
  grep -rl budget $MNT/INBOX | head
  getfattr -d "$MNT/INBOX/$first"

Stop with: scripts/demo.sh stop
EOT
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: scripts/demo.sh [start|stop|status]" >&2
    exit 2
    ;;
esac
