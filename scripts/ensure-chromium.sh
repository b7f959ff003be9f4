#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the browser tests (tests/browser).
# Idempotent and instant when /usr/bin/chromium is already there; otherwise installs the
# `chromium` package with apt-get (running `apt-get update` first). Playwright drives this
# browser through executable_path: never `playwright install` (no browser download).
set -euo pipefail

readonly CHROMIUM=/usr/bin/chromium

if [[ -x $CHROMIUM ]]; then
    exit 0
fi

log() { printf 'ensure-chromium: %s\n' "$*" >&2; }

command -v apt-get >/dev/null 2>&1 || {
    log "error: $CHROMIUM is missing and apt-get is unavailable; install Chromium yourself"
    exit 1
}
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "error: $CHROMIUM is missing; need root or sudo to install it"; exit 1; }
    sudo=(sudo)
fi

log "installing Debian's chromium package (apt-get update, then install)"
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
[[ -x $CHROMIUM ]] || { log "error: installed chromium but $CHROMIUM is still missing"; exit 1; }
log "$("$CHROMIUM" --version 2>/dev/null || echo chromium installed)"
