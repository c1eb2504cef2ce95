#!/usr/bin/env bash
# Installs the system tools the tests run that pip cannot: Debian's Chromium (the console's browser
# tests drive it; nothing is downloaded at run time), promtool from Debian's prometheus package (the
# alert rules), curl (the documented examples), and buildah and mmdebstrap (tests/test_image.py builds
# and runs the image). `make test` and `make image` run this first.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "make test needs ${missing[*]}: run \`sudo apt-get install -y ${missing[*]}\` and try again." >&2
  exit 1
fi
echo "Installing ${missing[*]} from Debian's packages (once)..." >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
