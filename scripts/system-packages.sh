#!/usr/bin/env bash
# Installs the Debian packages Chorus needs when they are missing (a fresh machine or CI).
# Idempotent and quiet when everything is there already.
set -euo pipefail
PACKAGES=(libopus0 espeak-ng chromium sip-tester baresip linphone-cli redis-server postgresql nginx)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "chorus: installing system packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
