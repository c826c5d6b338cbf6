#!/usr/bin/env bash
# The test command: set-up, formatting, lints, then every test of the workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# setup.sh installs what is missing; if it cannot (no network, no sudo), the checks below
# still say what the tests lack, in one line, before cargo runs anything.
setup_status=0
bash scripts/setup.sh || setup_status=$?

# What the mount and server tests need; without it they would fail deep inside a test.
missing() {
    echo "test.sh: cannot run the tests: $1" >&2
    exit 1
}
[[ -e /dev/fuse ]] ||
    missing "/dev/fuse does not exist (no FUSE here; in a container, pass --device /dev/fuse)"
# Open it read-write on a spare descriptor, as fusermount3 will.
(exec 3<>/dev/fuse) 2>/dev/null ||
    missing "/dev/fuse cannot be opened read-write by $(id -un) (check its permissions, or the container's device access)"
command -v fusermount3 >/dev/null 2>&1 ||
    missing "fusermount3 is not installed (Debian package fuse3; see scripts/setup.sh)"
[[ -x /usr/sbin/dovecot ]] || command -v dovecot >/dev/null 2>&1 ||
    missing "/usr/sbin/dovecot is not installed (Debian package dovecot-imapd; see scripts/setup.sh)"
command -v python3 >/dev/null 2>&1 ||
    missing "python3 is not installed (see scripts/setup.sh)"
if ((setup_status != 0)); then
    echo "test.sh: scripts/setup.sh failed (exit status $setup_status); see its output above" >&2
    exit "$setup_status"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test --workspace"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# One closing line for the whole workspace (cargo's last line is a doc-test crate's).
awk '/^test result:/ { passed += $4; failed += $6 }
     END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
