#!/usr/bin/env bash
# The benchmark: install what is missing, build imapfs and the driver (release), then measure
# imapfs against the IMAP protocol floor, mbsync and grep over a local Maildir, on loopback and
# on a slow link, against a private Dovecot with a generated corpus, whether its memory
# comes back after the kernel forgets a walk's inodes, what live updates cost (one APPEND
# elsewhere until visible; a second ls -l of an unchanged mailbox on the slow link);
# prefetch against mbsync, a warm remount with the disk cache, search against grep, and all
# of it with and without COMPRESS=DEFLATE. Prints one table and writes it to
# bench/RESULTS.md.
#
#   scripts/bench.sh             # 10,000 messages (+20,000 small ones to walk), median of 3 runs
#                                # (about 5 minutes)
#   scripts/bench.sh --quick     # 500 messages (+1,000), 1 run (about 20 seconds)
#   scripts/bench.sh --quick --only prefetch,remount --out /tmp/r.md
#                                # some groups of rows alone, while working on them
#   scripts/bench.sh --live-only --runs 1 --walk-messages 1
#                                # the live-update rows (11a, 11b) alone, printed, not written
#   scripts/bench.sh --help      # every option of the driver (--messages, --runs, --out, ...)
#
# Must run as root (Dovecot serves mail as another user; FUSE). Nothing is left behind: on
# exit, and on SIGINT/SIGTERM/SIGHUP, every mount under the work directory is unmounted and
# every process started there is stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case " $* " in
*" --help "* | *" -h "*) ;;
*)
    if [[ $(id -u) -ne 0 ]]; then
        echo "bench: must run as root (Dovecot and FUSE); try: sudo $0 $*" >&2
        exit 1
    fi
    ;;
esac

bash scripts/setup.sh
# bindfs, a FUSE passthrough, is the FUSE reference for the warm grep (optional: without it
# that one row is skipped).
if ! command -v bindfs >/dev/null 2>&1; then
    echo "bench: installing bindfs"
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
    apt-get "${apt_opts[@]}" install -y -qq bindfs >/dev/null 2>&1 ||
        { apt-get "${apt_opts[@]}" update -qq && apt-get "${apt_opts[@]}" install -y -qq bindfs >/dev/null; } ||
        echo "bench: could not install bindfs; the FUSE reference row is skipped" >&2
fi
echo "bench: building imapfs and imapfs-bench (release)"
cargo build --release -p imapfs -p imapfs-bench
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
driver=$target/release/imapfs-bench

if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then
    exec "$driver" --help
fi

WORK=$(mktemp -d /tmp/imapfs-bench.XXXXXX)
driver_pid=""

# Unmounts every mount under $WORK and stops every process whose command line names $WORK
# (imapfs, bindfs, mbsync, grep, Dovecot's master, whose process group holds its children).
sweep() {
    local mnt pid pgid
    while read -r mnt; do
        [[ -n $mnt ]] || continue
        echo "bench: unmounting leftover $mnt" >&2
        fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null ||
            umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v prefix="$WORK/" 'index($2, prefix) == 1 { print $2 }' /proc/mounts | sort -r)
    for pid in $(pgrep -f -- "$WORK" 2>/dev/null || true); do
        [[ $pid != "$$" ]] || continue
        echo "bench: stopping leftover process $pid" >&2
        pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
        if [[ $pgid == "$pid" ]]; then
            kill -TERM -- "-$pid" 2>/dev/null || true # a group leader: Dovecot and its children
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    sleep 0.5
    for pid in $(pgrep -f -- "$WORK" 2>/dev/null || true); do
        [[ $pid != "$$" ]] || continue
        kill -KILL "$pid" 2>/dev/null || true
    done
    if awk -v prefix="$WORK/" 'index($2, prefix) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
        echo "bench: something is still mounted under $WORK; leaving it" >&2
    else
        rm -rf --one-file-system "$WORK"
    fi
}

# Stops the driver (it unmounts and stops what it started), then sweeps.
on_signal() {
    trap - INT TERM HUP
    echo "bench: interrupted; cleaning up" >&2
    if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
        kill -TERM "$driver_pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 300; i++)); do
            kill -0 "$driver_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$driver_pid" 2>/dev/null || true
    fi
    exit 130
}

trap sweep EXIT
trap on_signal INT TERM HUP

# In the background so that a signal to this script runs the trap at once instead of after
# the driver ends; `wait` returns as soon as a trapped signal arrives.
BENCH_COMMAND="scripts/bench.sh${*:+ $*}" "$driver" --work-dir "$WORK" "$@" &
driver_pid=$!
set +e
wait "$driver_pid"
status=$?
set -e
driver_pid=""
exit "$status"
