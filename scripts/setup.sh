#!/usr/bin/env bash
# Installs what imapfs's tests, demo and benchmarks need on Debian, idempotently:
# Dovecot (IMAP server for tests), FUSE 3, OpenSSL headers and CLI, attr (getfattr),
# isync (mbsync, the benchmark's reference client), python3, and the tools the tests point
# at the mount as users do (rsync, vim, and gio from libglib2.0-bin), and man-db (the tests
# render the man page with man -l), gamin (Courier IMAP's file monitor, which it waits
# seconds for at each login without one) and the SASL database plugin (Cyrus's passwords).
# Then scripts/test-servers.sh unpacks Cyrus and Courier privately (they conflict with
# dovecot-imapd). Checks for cargo.
set -euo pipefail

packages=(dovecot-imapd fuse3 pkg-config libssl-dev openssl attr isync python3 rsync vim libglib2.0-bin man-db
    gamin libsasl2-modules-db)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done

if ((${#missing[@]} > 0)); then
    echo "setup: installing ${missing[*]}"
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt run (e.g. one started at boot) instead of failing on its lock.
    apt_opts=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
    "${sudo[@]}" apt-get "${apt_opts[@]}" update -qq
    "${sudo[@]}" apt-get "${apt_opts[@]}" install -y -qq "${packages[@]}"
    # Tests run private Dovecot instances on free ports; the stock service is not wanted.
    "${sudo[@]}" service dovecot stop >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null 2>&1; then
        "${sudo[@]}" systemctl disable --now dovecot >/dev/null 2>&1 || true
    fi
else
    echo "setup: system packages present"
fi

bash "$(dirname "${BASH_SOURCE[0]}")/test-servers.sh"

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
    exit 1
fi
for component in fmt clippy; do
    if ! cargo "$component" --version >/dev/null 2>&1; then
        echo "setup: warning: 'cargo $component' is missing (rustup component add ${component/fmt/rustfmt})" >&2
    fi
done
if [[ ! -e /dev/fuse ]]; then
    echo "setup: warning: /dev/fuse is missing; mount tests and the demo need it" >&2
fi
