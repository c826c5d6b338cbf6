#!/usr/bin/env bash
# Makes docs/screenshot.png: the file manager PCManFM, under a virtual X server (Xvfb),
# browsing a message directory of the demo mount with its attachments.
#
#   scripts/screenshot.sh [OUTPUT.png]
#
# Installs what is missing (xvfb, pcmanfm, imagemagick for `import`) with apt, starts the
# demo (scripts/demo.sh: a private Dovecot with sample mail, mounted at
# /tmp/imapfs-demo/mnt), takes the picture, then stops all of it again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${1:-docs/screenshot.png}
DISPLAY_NUMBER=${DISPLAY_NUMBER:-77}
MNT=/tmp/imapfs-demo/mnt
# The sample message with a PDF and a data file attached.
SUBJECT="Résumé and data"

packages=(xvfb pcmanfm imagemagick)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if ((${#missing[@]} > 0)); then
    echo "screenshot: installing ${missing[*]}"
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
    "${sudo[@]}" apt-get "${apt_opts[@]}" update -qq
    "${sudo[@]}" apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${packages[@]}"
fi

xvfb_pid=
pcmanfm_pid=
cleanup() {
    [[ -n $pcmanfm_pid ]] && kill "$pcmanfm_pid" 2>/dev/null || true
    [[ -n $xvfb_pid ]] && kill "$xvfb_pid" 2>/dev/null || true
    scripts/demo.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

scripts/demo.sh start >/dev/null

message=$(find "$MNT/INBOX" -mindepth 1 -maxdepth 1 -type d -name "* $SUBJECT" | head -n 1)
if [[ -z $message ]]; then
    echo "screenshot: no message '$SUBJECT' in $MNT/INBOX" >&2
    exit 1
fi

Xvfb ":$DISPLAY_NUMBER" -screen 0 1024x640x24 -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
export DISPLAY=":$DISPLAY_NUMBER"
for ((i = 0; i < 100; i++)); do
    xdpyinfo >/dev/null 2>&1 && break
    sleep 0.1
done

# A private configuration: detailed list view, no desktop, no side pane surprises.
config=$(mktemp -d)
mkdir -p "$config/pcmanfm/default"
cat >"$config/pcmanfm/default/pcmanfm.conf" <<'EOF'
[ui]
win_width=1024
win_height=640
maximized=1
side_pane_mode=places
view_mode=list
show_hidden=0
[config]
bm_open_method=0
EOF
XDG_CONFIG_HOME=$config NO_AT_BRIDGE=1 pcmanfm --no-desktop "$message" >/dev/null 2>&1 &
pcmanfm_pid=$!

# Wait until the window shows the message's files (PCManFM lists them at once; the
# thumbnails and sizes need a moment more).
for ((i = 0; i < 100; i++)); do
    xwininfo -root -tree 2>/dev/null | grep -q "$SUBJECT" && break
    sleep 0.1
done
sleep 3

mkdir -p "$(dirname "$OUT")"
import -window root "$OUT"
rm -rf "$config"
echo "screenshot: wrote $OUT"
