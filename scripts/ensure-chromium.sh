#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the browser tests (tests/browser), with a font
# for Chinese, Japanese and Korean text (fonts-wqy-microhei, 1.6 MB): the tests type a Chinese
# prompt, and without one its screenshots (docs/screenshots) show empty boxes.
# Idempotent and instant when both are there; otherwise installs what is missing with apt-get
# (running `apt-get update` first). Playwright drives this browser through executable_path:
# never `playwright install` (no browser download).
set -euo pipefail

readonly CHROMIUM=/usr/bin/chromium
readonly CJK_FONT=/usr/share/fonts/truetype/wqy/wqy-microhei.ttc

missing=()
[[ -x $CHROMIUM ]] || missing+=(chromium)
[[ -f $CJK_FONT ]] || missing+=(fonts-wqy-microhei)
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

log() { printf 'ensure-chromium: %s\n' "$*" >&2; }

command -v apt-get >/dev/null 2>&1 || {
    log "error: ${missing[*]} missing and apt-get is unavailable; install them yourself"
    exit 1
}
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "error: ${missing[*]} missing; need root or sudo to install them"; exit 1; }
    sudo=(sudo)
fi

log "installing Debian's ${missing[*]} (apt-get update, then install)"
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
[[ -x $CHROMIUM ]] || { log "error: installed chromium but $CHROMIUM is still missing"; exit 1; }
log "$("$CHROMIUM" --version 2>/dev/null || echo chromium installed)"
