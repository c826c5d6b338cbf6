#!/usr/bin/env bash
# Installs imapfs: the binary, its man page, bash/zsh/fish completions, and the mount helper
# that lets `mount -t fuse.imapfs` and fstab find it. Builds it first if needed.
#
#   scripts/install.sh                 # into /usr/local (PREFIX), helper in /sbin (SBINDIR)
#   PREFIX=~/.local scripts/install.sh
#   scripts/install.sh --uninstall     # removes exactly what the last install put in place
#
# PREFIX     where bin/, share/man/ and the completions go (default /usr/local)
# SBINDIR    where mount(8) looks for helpers (default /sbin); mount.fuse.imapfs there is a
#            symlink to $PREFIX/bin/imapfs. Skipped, with a note, if it cannot be written.
# IMAPFS_BIN install this binary instead of building one (cargo build --release).
#
# The man page and the completions come from the installed binary itself
# (`imapfs --generate man|bash|zsh|fish`), so they always describe the options it has.
# What was installed is listed in $PREFIX/share/imapfs/install-manifest, which
# --uninstall reads.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PREFIX=${PREFIX:-/usr/local}
SBINDIR=${SBINDIR:-/sbin}
MANIFEST=$PREFIX/share/imapfs/install-manifest

say() { echo "install.sh: $*"; }

uninstall() {
    if [[ ! -f $MANIFEST ]]; then
        say "nothing to uninstall: no $MANIFEST"
        exit 0
    fi
    # Files first, then the directories this install created, deepest first.
    local kind path
    while IFS=' ' read -r kind path; do
        case $kind in
            file) rm -f -- "$path" && say "removed $path" ;;
            link)
                # Only our own helper: a helper someone else put there is left alone.
                if [[ -L $path && $(readlink -- "$path") == "$PREFIX/bin/imapfs" ]]; then
                    rm -f -- "$path" && say "removed $path"
                fi
                ;;
        esac
    done <"$MANIFEST"
    local created=()
    if [[ -f $MANIFEST.dirs ]]; then
        mapfile -t created <"$MANIFEST.dirs"
    fi
    rm -f -- "$MANIFEST" "$MANIFEST.dirs"
    local i
    for ((i = ${#created[@]} - 1; i >= 0; i--)); do
        rmdir -- "${created[i]}" 2>/dev/null && say "removed ${created[i]}/" || true
    done
    exit 0
}

if [[ ${1:-} == --uninstall ]]; then
    uninstall
elif [[ $# -gt 0 ]]; then
    echo "usage: [PREFIX=DIR] [SBINDIR=DIR] $0 [--uninstall]" >&2
    exit 2
fi

if [[ -n ${IMAPFS_BIN:-} ]]; then
    binary=$IMAPFS_BIN
else
    say "building imapfs (cargo build --release)"
    cargo build --release --locked -p imapfs
    binary=target/release/imapfs
fi
[[ -x $binary ]] || { echo "install.sh: $binary is not an executable" >&2; exit 1; }

# A new install replaces the record of the last one (its files are overwritten below).
mkdir_recorded() {
    local dir=$1 missing=()
    while [[ ! -d $dir ]]; do
        missing+=("$dir")
        dir=$(dirname "$dir")
    done
    local i
    for ((i = ${#missing[@]} - 1; i >= 0; i--)); do
        mkdir -- "${missing[i]}"
        echo "${missing[i]}" >>"$dirs_record"
    done
}

dirs_record=$(mktemp)
entries=$(mktemp)
trap 'rm -f "$dirs_record" "$entries"' EXIT
if [[ -f $MANIFEST.dirs ]]; then
    cat -- "$MANIFEST.dirs" >>"$dirs_record"
fi

put() { # put MODE DEST < content
    local mode=$1 dest=$2
    mkdir_recorded "$(dirname "$dest")"
    install -m "$mode" /dev/stdin "$dest"
    echo "file $dest" >>"$entries"
    say "installed $dest"
}

put 0755 "$PREFIX/bin/imapfs" <"$binary"
installed=$PREFIX/bin/imapfs
"$installed" --generate man | put 0644 "$PREFIX/share/man/man1/imapfs.1"
"$installed" --generate bash | put 0644 "$PREFIX/share/bash-completion/completions/imapfs"
"$installed" --generate zsh | put 0644 "$PREFIX/share/zsh/site-functions/_imapfs"
"$installed" --generate fish | put 0644 "$PREFIX/share/fish/vendor_completions.d/imapfs.fish"

# mount(8) runs /sbin/mount.<type> helpers without a PATH; a symlink there reaches imapfs
# wherever PREFIX is (imapfs knows by its name to take mount's arguments).
helper=$SBINDIR/mount.fuse.imapfs
if [[ -w $SBINDIR ]] && { [[ ! -e $helper && ! -L $helper ]] || [[ $(readlink -- "$helper" 2>/dev/null) == "$installed" ]]; }; then
    ln -sfn -- "$installed" "$helper"
    echo "link $helper" >>"$entries"
    say "installed $helper -> $installed"
elif [[ -e $helper || -L $helper ]]; then
    say "left $helper alone: it is not a link to $installed"
else
    say "cannot write $SBINDIR: mount -t fuse.imapfs will find imapfs only on mount's default PATH"
fi

mkdir_recorded "$(dirname "$MANIFEST")"
# In the order of creation (parents before children), for the reverse removal.
awk '!seen[$0]++' "$dirs_record" >"$MANIFEST.dirs"
cp -- "$entries" "$MANIFEST"
say "done; 'scripts/install.sh --uninstall' (same PREFIX) removes it again"
