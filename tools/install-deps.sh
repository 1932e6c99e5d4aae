#!/bin/sh
# Installs the Debian packages llmfs needs to build, run and test.
# Usage: tools/install-deps.sh [--test]   (as root, or through sudo)
set -eu
pkgs="meson ninja-build pkg-config gcc fuse3 libfuse3-dev libzstd-dev
      libxxhash-dev libsqlite3-dev libssl-dev libjansson-dev
      libcurl4-openssl-dev libopenblas-dev"
if [ "${1:-}" = "--test" ]; then
    pkgs="$pkgs zstd sqlite3 rsync attr bc python3 python3-torch python3-numpy clang
          libmicrohttpd-dev libclang-rt-14-dev curl docker-registry apache2-utils
          skopeo"
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
