#!/usr/bin/env bash
# Install one Debian package for the tests when apt-get is there (as root, or through sudo):
#   bash scripts/apt_install.sh LABEL PACKAGE WHAT-FAILS-WITHOUT-IT
# Prints why and exits 0 when it cannot (no apt-get, no root): the tests that need the package
# then say so. Shared by browser.sh and prometheus.sh, which check for the commands first.
set -euo pipefail
label=$1 package=$2 without=$3
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$label: no $package and no apt-get; $without" >&2
  exit 0
fi
sudo=""
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "$label: installing $package needs root; $without" >&2
    exit 0
  fi
fi
echo "$label: installing Debian's $package for the tests ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends "$package" >/dev/null \
  || { $sudo apt-get update -qq && $sudo apt-get install -y --no-install-recommends "$package" >/dev/null; }
