#!/usr/bin/env bash
# Installs Prometheus' own linter, promtool, into the given bin directory (default .venv/bin).
# The tests run `promtool check metrics` against our real /metrics output.
# It comes from Debian's `prometheus` package; we unpack only the binary, so no service is installed or started.
set -euo pipefail
mkdir -p "${1:-.venv/bin}"
dest=$(cd "${1:-.venv/bin}" && pwd)
if command -v promtool >/dev/null 2>&1; then
    ln -sf "$(command -v promtool)" "$dest/promtool"
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
    $sudo apt-get update -qq >/dev/null
    apt-get download prometheus >/dev/null
fi
dpkg-deb -x prometheus_*.deb root
install -m 0755 root/usr/bin/promtool "$dest/promtool"
"$dest/promtool" --version | head -n 1
