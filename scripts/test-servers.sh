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
root=$prefix/root
fetch() {
    (cd "$prefix/debs" && apt-get download -q "$@" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
    local deb
    for deb in "$prefix"/debs/*.deb; do
        dpkg-deb -x "$deb" "$root"
    done
}
fetch "${packages[@]}"

# Every server binary must find its libraries: the system's, or the prefix's.
export LD_LIBRARY_PATH="$root/usr/lib:$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
binaries=(usr/lib/cyrus/bin/master usr/lib/cyrus/bin/imapd usr/sbin/saslpasswd2
    usr/sbin/couriertcpd usr/bin/couriertls usr/bin/imapd usr/lib/courier/courier/imaplogin)
missing_libraries() {
    local binary
    for binary in "${binaries[@]}"; do
        ldd "$root/$binary" | awk '/not found/ { print $1 }'
    done | sort -u
}
# Libraries this machine lacks (which differs from machine to machine: libidn12 is on
# some and not others) come from the package Debian names after the soname:
# libidn.so.12 is in libidn12, libsasl2.so.2 in libsasl2-2.
package_of() {
    local name=${1%%.so.*} version=${1##*.so.}
    version=${version%%.*}
    [[ $name =~ [0-9]$ ]] && name+=-
    echo "$name$version"
}
for binary in "${binaries[@]}"; do
    if [[ ! -x $root/$binary ]]; then
        echo "test-servers: $binary is missing from the unpacked packages" >&2
        exit 1
    fi
done
for _round in 1 2 3; do
    mapfile -t lacking < <(missing_libraries)
    ((${#lacking[@]})) || break
    extra=()
    for soname in "${lacking[@]}"; do
        package=$(package_of "$soname")
        if ! apt-cache show --no-all-versions "$package" >/dev/null 2>&1; then
            echo "test-servers: no Debian package $package for the missing $soname" >&2
            exit 1
        fi
        extra+=("$package")
    done
    echo "test-servers: fetching ${extra[*]} for ${lacking[*]}"
    fetch "${extra[@]}"
done
mapfile -t lacking < <(missing_libraries)
if ((${#lacking[@]})); then
    echo "test-servers: the servers still lack ${lacking[*]}" >&2
    exit 1
fi
echo "${packages[*]}" >"$stamp"
echo "test-servers: Cyrus and Courier unpacked into $prefix"
