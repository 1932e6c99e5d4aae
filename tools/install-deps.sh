#!/bin/sh
# Installs the Debian packages llmfs needs to build, run and test.
# Usage: tools/install-deps.sh [--test]   (as root, or through sudo)
set -eu
pkgs="meson ninja-build pkg-config gcc g++ fuse3 libfuse3-dev libzstd-dev
      libxxhash-dev libsqlite3-dev libssl-dev libjansson-dev
      libcurl4-openssl-dev libopenblas-dev libpcre2-dev libmicrohttpd-dev
      libarchive-dev runc"
if [ "${1:-}" = "--test" ]; then
    pkgs="$pkgs zstd sqlite3 rsync attr bc python3 python3-torch python3-numpy python3-protobuf python3-crc32c clang
          libmicrohttpd-dev libclang-rt-14-dev curl docker-registry apache2-utils
          skopeo mmdebstrap slurm-wlm munge iproute2"
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
# docker-registry's package starts a system registry from its postinst (and
# fails the install where that service cannot start, as in a container).
# The tests start registries of their own: keep packages from starting
# services while they install, unless a policy is already in place.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
