#!/usr/bin/env bash
# Puts Cyrus IMAP and Courier IMAP where the tests run them, WITHOUT installing them:
# Debian's cyrus-imapd and courier-imap conflict with dovecot-imapd (all provide
# imap-server), so installing either would remove the Dovecot every other test needs.
# Instead their packages and the few libraries the system lacks are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into a private prefix
# (default target/test-servers; IMAPFS_TEST_SERVERS overrides), from which the fixture
# crate runs them with their configuration in each test's temporary directory.
# Idempotent: a prefix whose package list matches is left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

prefix=${IMAPFS_TEST_SERVERS:-$PWD/target/test-servers}
# Cyrus 3.6 (+ xapian, pcre, ical; sasl2-bin for saslpasswd2, to write its password
# database), Courier IMAP 5 (+ its base, authlib, unicode library and gamin).
packages=(
    cyrus-imapd cyrus-common libxapian30 libpcre3 libical3 sasl2-bin
    courier-imap courier-base courier-authlib libcourier-unicode4 libgamin0
)
stamp="$prefix/PACKAGES"
if [[ -f $stamp && $(cat "$stamp") == "${packages[*]}" ]]; then
    echo "test-servers: Cyrus and Courier present in $prefix"
    exit 0
fi

echo "test-servers: fetching ${packages[*]} into $prefix"
rm -rf "$prefix"
mkdir -p "$prefix/debs" "$prefix/root"
# apt-get download writes into the current directory; _apt needs to be able to write it.
chmod 0777 "$prefix/debs"
(cd "$prefix/debs" && apt-get download -q "${packages[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
for deb in "$prefix"/debs/*.deb; do
    dpkg-deb -x "$deb" "$prefix/root"
done

# Every server binary must find its libraries: the system's, or the prefix's.
root=$prefix/root
export LD_LIBRARY_PATH="$root/usr/lib:$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
for binary in usr/lib/cyrus/bin/master usr/lib/cyrus/bin/imapd usr/sbin/saslpasswd2 \
    usr/sbin/couriertcpd usr/bin/couriertls usr/bin/imapd usr/lib/courier/courier/imaplogin; do
    if [[ ! -x $root/$binary ]]; then
        echo "test-servers: $binary is missing from the unpacked packages" >&2
        exit 1
    fi
    if ldd "$root/$binary" | grep -q 'not found'; then
        echo "test-servers: $binary lacks libraries:" >&2
        ldd "$root/$binary" | grep 'not found' >&2
        exit 1
    fi
done
echo "${packages[*]}" >"$stamp"
echo "test-servers: Cyrus and Courier unpacked into $prefix"
