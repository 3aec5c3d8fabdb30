#!/usr/bin/env bash
# Installs the Debian packages of the given lists that are missing, e.g.
#   bash deploy/install-system-packages.sh deploy/system-packages.txt   (the worker image)
#   bash deploy/install-system-packages.sh deploy/system-packages.txt deploy/test-packages.txt
#                                                                         (make test)
# A list has one package a line; blank lines and # comments are skipped.
# Needs root (or sudo) only when something is missing.
set -euo pipefail
if [[ $# -eq 0 ]]; then
  echo "usage: $0 LIST [LIST...]  (e.g. deploy/system-packages.txt deploy/test-packages.txt)" >&2
  exit 2
fi
missing=()
for list in "$@"; do
  [[ -r "$list" ]] || { echo "$0: no such package list: $list" >&2; exit 2; }
  while read -r pkg _; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done < "$list"
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
