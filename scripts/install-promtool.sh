#!/usr/bin/env bash
# Installs Prometheus' own linter, promtool, and the Prometheus server, prometheus, into the given bin directory
# (default .venv/bin). The tests run `promtool check metrics` against our real /metrics output, and the fleet test
# (tests/test_fleet.py) runs `prometheus` twice: once in agent mode, once as the central store.
# Both come from Debian's `prometheus` package (2.42 on Debian 12); we unpack only the binaries, so no service is
# installed or started. A binary already in the directory is kept; one on PATH is linked instead.
set -euo pipefail
mkdir -p "${1:-.venv/bin}"
dest=$(cd "${1:-.venv/bin}" && pwd)
missing=()
for tool in promtool prometheus; do
    if [ -x "$dest/$tool" ]; then
        continue
    elif command -v "$tool" >/dev/null 2>&1 && [ "$(command -v "$tool")" != "$dest/$tool" ]; then
        ln -sf "$(command -v "$tool")" "$dest/$tool"
    else
        missing+=("$tool")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
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
    for tool in "${missing[@]}"; do
        install -m 0755 "root/usr/bin/$tool" "$dest/$tool"
    done
fi
"$dest/promtool" --version | head -n 1
"$dest/prometheus" --version 2>&1 | head -n 1
