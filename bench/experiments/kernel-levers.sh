#!/bin/bash
# The kernel levers of issue 15 item 1, measured: a warm `grep -rl --include=message.eml`
# over 10,000 messages (25 kB on average) with ENOSYS from flush, opendir and open, alone
# and together, against grep over the server's Maildir. The levers are not in imapfs (see
# README, "Performance"): kernel-levers.patch adds them behind IMAPFS_EXPERIMENT, in a
# worktree of its own, built into target/levers.
#
#   bench/experiments/kernel-levers.sh        # about 10 minutes on 2 cores
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/imapfs-levers.XXXXXX)
chmod 755 "$work" # Dovecot's auth process reads the users file inside
mnt=$work/mnt
mkdir -p "$mnt"
cleanup() {
    umount "$mnt" 2>/dev/null || true
    [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
    git -C "$root" worktree remove --force "$work/tree" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The patch is against 305aa1c, before OPENDIR was turned off in imapfs itself (8afcb70).
git -C "$root" worktree add --quiet --detach "$work/tree" 305aa1c
git -C "$work/tree" apply "$root/bench/experiments/kernel-levers.patch"
CARGO_TARGET_DIR="$root/target/levers" cargo build --quiet --release \
    --manifest-path "$work/tree/Cargo.toml" --bin imapfs
(cd "$root" && cargo build --quiet --release -p imapfs-fixture)
imapfs=$root/target/levers/release/imapfs

"$root/target/release/imapfs-fixture" serve --dir "$work/srv" --messages 10000 \
    --avg-size 25000 > "$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do [ -s "$work/srv/env" ] && break; sleep 0.5; done
# shellcheck disable=SC1091
. "$work/srv/env"

TIMEFORMAT=%R
timed() { { time "$@" > /dev/null; } 2>&1; }
for levers in "" noflush noopendir noopendir,noflush "noopen,noflush" "noopendir,noopen,noflush"; do
    IMAPFS_EXPERIMENT="$levers" "$imapfs" -f --password-command "echo $PASSWORD" \
        --ca-file "$CA_FILE" --no-disk-cache --compress never --cache-size 402653184 \
        "$SOURCE" "$mnt" > "$work/mount.log" 2>&1 &
    for _ in $(seq 1 50); do mountpoint -q "$mnt" && break; sleep 0.2; done
    mountpoint -q "$mnt" || { cat "$work/mount.log"; tail -20 "$LOG_FILE"; exit 1; }
    grep_mount() { grep -rl --include=message.eml zzzqqq "$mnt/INBOX" || true; }
    grep_maildir() { grep -rl zzzqqq "$MAILDIR" || true; }
    cold=$(timed grep_mount)
    warm="" maildir=""
    for _ in 1 2 3; do warm="$warm $(timed grep_mount)"; done
    for _ in 1 2 3; do maildir="$maildir $(timed grep_maildir)"; done
    echo "levers=${levers:-none}: cold $cold s; warm$warm s; Maildir$maildir s"
    umount "$mnt"
    sleep 1
done
