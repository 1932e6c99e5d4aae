#!/bin/sh
# Benchmarks of net/ (push, pull, lazy reads, resume) against a real
# registry, each against a baseline measured in the same run: curl moving
# the same pack blobs with the same number of connections.
#
#   sh tools/bench/net-bench.sh BUILD_DIR [SIZE_MIB] [ROUNDS]
#
# Needs root (FUSE, drop_caches, network namespaces, tc with sch_tbf),
# Debian's docker-registry, curl, python3 and gcc.  The slow-link figure
# puts the registry behind tests/remote/faultproxy.py for the round-trip
# time (FAULTPROXY=PATH to use another copy; without one it measures with
# no added delay and says so).  SLOW_MIB (256) and RESUME_MIB (512) size
# the slow-link and resume models.  Prints one line per measurement;
# docs/benchmarks.md records a run.
set -eu
build=$(cd "${1:?usage: net-bench.sh BUILD_DIR [SIZE_MIB] [ROUNDS]}" && pwd)
size=${2:-2048}
rounds=${3:-3}
src=$(cd "$(dirname "$0")" && pwd)
. "$src/lib-mount.sh"
root=$(cd "$src/../.." && pwd)
faultproxy=${FAULTPROXY:-$root/tests/remote/faultproxy.py}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/llmfs-netbench.XXXXXX")
mnt=$work/mnt
store=$work/store
conns=4
pid=
reg_pid=
ns_reg_pid=
proxy_pid=
cp_pid=
# The slow link: a namespace holding the registry, a veth pair, tbf both ways.
ns=llmfsnb$$
veth_h=nbh$$
veth_r=nbr$$
net=10.213.$(($$ % 250 + 1))
ns_up=
slow_url=
slow_mib=${SLOW_MIB:-256}
resume_mib=${RESUME_MIB:-512}

cleanup() {
	set +e
	[ -n "$cp_pid" ] && kill "$cp_pid" 2>/dev/null
	fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null
	[ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
	for p in "$proxy_pid" "$reg_pid" "$ns_reg_pid"; do
		[ -n "$p" ] && { kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; }
	done
	if [ -n "$ns_up" ]; then
		tc qdisc del dev "$veth_h" root 2>/dev/null
		ip netns exec "$ns" tc qdisc del dev "$veth_r" root 2>/dev/null
		ip link del "$veth_h" 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	fi
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
ratio() { echo "scale=3; $1 / $2" | bc; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
minof() {
	if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc)" = 1 ]; then echo "$2"; else echo "$1"; fi
}
mib() { echo "scale=1; $1 / 1048576" | bc; }
met() { if [ "$(echo "$1" | bc)" = 1 ]; then echo yes; else echo no; fi; }
# timed CMD...: runs CMD, prints its wall time in seconds.
timed() { t0=$(now); "$@" > /dev/null; t1=$(now); elapsed "$t0" "$t1"; }

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: until URL answers 200, 20 s at most.
wait_http() {
	i=0
	until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = 200 ]; do
		i=$((i + 1)); [ $i -lt 200 ] || { echo "no answer from $1" >&2; exit 1; }
		sleep 0.1
	done
}

# reg_config DIR ADDR: a registry config without auth keeping its blobs in DIR/data.
reg_config() {
	mkdir -p "$1/data"
	{
		echo "version: 0.1"
		echo "log: {level: error, accesslog: {disabled: true}}"
		echo "storage:"
		echo "  filesystem: {rootdirectory: $1/data}"
		echo "  delete: {enabled: true}"
		echo "http: {addr: $2, secret: llmfs-bench}"
	} > "$1/config.yml"
}

# The loopback registry; reg_reset empties its storage (same port).
reg_start() {
	reg_config "$work/reg" "127.0.0.1:$port"
	docker-registry serve "$work/reg/config.yml" >> "$work/reg.log" 2>&1 &
	reg_pid=$!
	wait_http "$url/v2/"
}
reg_stop() { kill "$reg_pid"; wait "$reg_pid" 2>/dev/null || true; reg_pid=; }
reg_reset() { reg_stop; rm -rf "$work/reg/data"; reg_start; }

# remotes STORE: remotes.json naming the loopback registry (lab) and, once
# the slow link is up, the namespace registry direct (ns) and behind the
# proxy (slow).
remotes() {
	mkdir -p "$1"
	{
		printf '{"remotes": {"lab": {"url": "%s", "insecure": true, "connections": %d}' "$url" "$conns"
		[ -n "$ns_up" ] && printf ', "ns": {"url": "%s", "insecure": true, "connections": %d}' "$ns_url" "$conns"
		[ -n "$slow_url" ] && printf ', "slow": {"url": "%s", "insecure": true, "connections": %d}' "$slow_url" "$conns"
		printf '}}\n'
	} > "$1/remotes.json"
}

mount_llmfs() {
	remotes "$store"
	bench_mount "$build/fs/llmfs" "$store" "$mnt" "$work/daemon.log"
}
umount_llmfs() { fusermount3 -u "$mnt"; wait "$pid" || true; pid=; }
fresh_llmfs() { rm -rf "$store"; mount_llmfs; }
stat_of() { awk -v k="$1:" '$1 == k { print $2 }' "$mnt/.llmfs/status"; }

# fetched KIND NAME: bytes moved by all transfers of KIND (pull, push, read)
# whose name contains NAME, as .llmfs/transfers counts them.
fetched() {
	awk -v k="$1" -v n="$2" '$1 == k && index($2, n) { split($3, a, "/"); s += a[1] } END { print s + 0 }' \
		"$mnt/.llmfs/transfers"
}
# progress KIND: DONE TOTAL of the newest transfer of KIND.
progress() {
	awk -v k="$1" '$1 == k { split($3, a, "/"); print a[1], a[2]; exit }' "$mnt/.llmfs/transfers" 2>/dev/null
}
# sent REPO:TAG: bytes the daemon's log says the newest push of it sent.
sent() {
	grep "$1: pushed" "$work/daemon.log" | tail -1 | sed 's/.*new, \([0-9]*\) bytes sent/\1/'
}

# blobs BASE REPO TAG: "digest size" of the config and every layer.
blobs() {
	curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$1/v2/$2/manifests/$3" |
	python3 -c '
import json, sys
m = json.load(sys.stdin)
for b in [m["config"]] + m["layers"]:
    print(b["digest"], b["size"])'
}
wire_bytes() { blobs "$@" | awk '{ s += $2 } END { print s }'; }

# curl_get BASE REPO TAG DIR: the manifest, then every blob with $conns
# parallel GETs, into files in DIR, fsynced (a pull commits what it stores).
curl_get() {
	rm -rf "$4"; mkdir -p "$4"
	curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' -o "$4/manifest.json" "$1/v2/$2/manifests/$3"
	blobs "$1" "$2" "$3" | cut -d' ' -f1 |
		xargs -P "$conns" -I@ curl -sf -o "$4/@" "$1/v2/$2/blobs/@"
	sync "$4"/*
}

# curl_put BASE REPO DIR: uploads every blob in DIR (named by digest) with
# $conns parallel POST + PUT pairs, then the manifest.
curl_put() {
	for f in "$3"/sha256:*; do basename "$f"; done | xargs -P "$conns" -I@ sh "$work/up.sh" "$1" "$2" "$3/@"
	curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
		--data-binary "@$3/manifest.json" -o /dev/null "$1/v2/$2/manifests/v1"
}
write_helpers() {
	cp "$root/tests/net/readat.py" "$helper/readat.py"
	cat > "$helper/pread.py" <<'EOF'
# pread.py A B N SEED LEN: N preads of LEN bytes at random LEN-aligned
# offsets (seeded) of files A and B; exits 1 at the first difference.
import os, random, sys
a, b, n, seed, ln = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
blocks = os.fstat(fa).st_size // ln
for _ in range(n):
    off = rng.randrange(blocks) * ln
    if os.pread(fa, ln, off) != os.pread(fb, ln, off):
        sys.exit("differ at %d" % off)
EOF
	cat > "$work/up.sh" <<'EOF'
# up.sh BASE REPO FILE: one monolithic blob upload (POST, then PUT with the digest).
set -eu
loc=$(curl -sf -X POST -D - -o /dev/null "$1/v2/$2/blobs/uploads/" |
	tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
case $loc in /*) loc=$1$loc ;; esac
case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sf -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' \
	-T "$3" -o /dev/null "$loc${sep}digest=$(basename "$3")"
EOF
}

# model DIR MIB SEED: a folder holding one safetensors file of bf16 weights
# (a JSON header, then tensors of 4 MiB), as store-bench.sh makes them.
model() {
	mkdir -p "$1"
	python3 - "$(($2 / 4))" > "$1/$wfile" <<'EOF'
import json, sys
n = int(sys.argv[1])
h = {"__metadata__": {"format": "pt"}}
for i in range(n):
    h["t%d" % i] = {"dtype": "BF16", "shape": [1024, 2048], "data_offsets": [i << 22, (i + 1) << 22]}
b = json.dumps(h).encode()
sys.stdout.buffer.write(len(b).to_bytes(8, "little") + b)
EOF
	"$work/gen" bf16 "$2" "$3" >> "$1/$wfile"
}

# 1. Push of a SIZE MiB model to an empty registry vs curl uploading the
# same pack blobs.  Leaves bench/m:v1 in the registry and its blobs in
# $work/blobs.
bench_push() {
	fresh_llmfs
	cp -r "$work/data/m" "$mnt/models/m"
	mkdir "$mnt/net/lab/bench"
	cp -r "$mnt/models/m" "$mnt/net/lab/bench/m:v1"
	umount_llmfs
	mkdir -p "$work/blobs"
	curl_get "$url" bench/m v1 "$work/blobs"
	lt=; ct=
	for round in $(seq "$rounds"); do
		reg_reset; drop
		ct=$(minof "$ct" "$(timed curl_put "$url" bench/c "$work/blobs")")
		reg_reset; fresh_llmfs
		cp -r "$work/data/m" "$mnt/models/m"
		mkdir "$mnt/net/lab/bench"
		drop
		lt=$(minof "$lt" "$(timed cp -r "$mnt/models/m" "$mnt/net/lab/bench/m:v1")")
		s=$(sent bench/m:v1)
		umount_llmfs
	done
	wire=$(wire_bytes "$url" bench/m v1)
	r=$(ratio "$ct" "$lt")
	echo "push $size MiB: llmfs ${lt}s ($s B sent), curl -P$conns ${ct}s ($wire B of blobs), throughput ratio $r (goal >= 0.9, met: $(met "$r >= 0.9"))"
}

# 2. Pull of the model into an empty store vs curl downloading its blobs.
bench_pull() {
	lt=; ct=
	for round in $(seq "$rounds"); do
		drop
		ct=$(minof "$ct" "$(timed curl_get "$url" bench/m v1 "$work/dl")")
		rm -rf "$work/dl"
		fresh_llmfs; drop
		lt=$(minof "$lt" "$(timed cp -r "$mnt/net/lab/bench/m/v1" "$mnt/models/m")")
		[ "$round" = 1 ] && cmp "$work/data/m/$wfile" "$mnt/models/m/$wfile"
		umount_llmfs
	done
	r=$(ratio "$ct" "$lt")
	echo "pull $size MiB: llmfs ${lt}s, curl -P$conns + fsync ${ct}s, throughput ratio $r (goal >= 0.9, met: $(met "$r >= 0.9")); pulled file identical"
}

# 3. Pull of a 256 MiB model over a 100 Mbit/s link (tbf both ways), with
# 40 ms added to every registry request by the proxy when there is one.
slow_link_up() {
	ip netns add "$ns"; ns_up=1
	ip link add "$veth_h" type veth peer name "$veth_r"
	ip link set "$veth_r" netns "$ns"
	ip addr add "$net.1/24" dev "$veth_h"; ip link set "$veth_h" up
	ip netns exec "$ns" ip addr add "$net.2/24" dev "$veth_r"
	ip netns exec "$ns" ip link set "$veth_r" up
	ip netns exec "$ns" ip link set lo up
	ns_url=http://$net.2:$port
	reg_config "$work/nsreg" "$net.2:$port"
	ip netns exec "$ns" docker-registry serve "$work/nsreg/config.yml" >> "$work/nsreg.log" 2>&1 &
	ns_reg_pid=$!
	wait_http "$ns_url/v2/"
}
shape() {
	tc qdisc add dev "$veth_h" root tbf rate 100mbit burst 64kb latency 50ms
	ip netns exec "$ns" tc qdisc add dev "$veth_r" root tbf rate 100mbit burst 64kb latency 50ms
}
proxy_up() {
	rtt_note="no added round-trip time"
	if ! [ -f "$faultproxy" ]; then
		slow_url=$ns_url
		echo "# slow link: no faultproxy.py at $faultproxy, so $rtt_note"
		return 0
	fi
	echo '{"rules": [{"path": "/v2/", "count": -1, "action": "stall", "seconds": 0.04}]}' > "$work/proxy.rules"
	python3 "$faultproxy" --upstream "$ns_url" --port-file "$work/proxy.port" \
		--rules "$work/proxy.rules" 2>> "$work/proxy.log" &
	proxy_pid=$!
	i=0
	until [ -s "$work/proxy.port" ]; do
		i=$((i + 1)); [ $i -lt 200 ] || { echo "faultproxy did not start"; exit 1; }
		sleep 0.1
	done
	slow_url=http://127.0.0.1:$(cat "$work/proxy.port")
	rtt_note="40 ms added before every registry answer (faultproxy stall)"
}
bench_slow() {
	slow_link_up
	model "$work/data/s" "$slow_mib" 3
	fresh_llmfs
	cp -r "$work/data/s" "$mnt/models/s"
	mkdir "$mnt/net/ns/bench"
	cp -r "$mnt/models/s" "$mnt/net/ns/bench/s:v1"
	umount_llmfs
	wire=$(wire_bytes "$ns_url" bench/s v1)
	shape; proxy_up
	lt=; ct=
	for round in $(seq "$rounds"); do
		ct=$(minof "$ct" "$(timed curl_get "$slow_url" bench/s v1 "$work/dl")")
		rm -rf "$work/dl"
		fresh_llmfs
		lt=$(minof "$lt" "$(timed cp -r "$mnt/net/slow/bench/s/v1" "$mnt/models/s")")
		[ "$round" = 1 ] && cmp "$work/data/s/$wfile" "$mnt/models/s/$wfile"
		umount_llmfs
	done
	lf=$(echo "scale=3; $wire * 8 / $lt / 100000000" | bc)
	cf=$(echo "scale=3; $wire * 8 / $ct / 100000000" | bc)
	echo "slow link (100 Mbit/s tbf both ways, $rtt_note), pull of $slow_mib MiB ($wire B of blobs):" \
	     "llmfs ${lt}s = $lf of the link, curl -P$conns ${ct}s = $cf of the link, ratio $(ratio "$lf" "$cf")" \
	     "(goal >= 0.9 of the link, met: $(met "$lf >= 0.9"))"
	rm -rf "$work/data/s"
}

# 4. v2 (10% of tensors changed, header grown) after v1: bytes pushed and
# pulled for v2.
bench_v2() {
	n=$((size / 16))
	python3 "$root/tests/net/mkmodel.py" "$work/data/v1.safetensors" "$n" 4194304 --seed 5
	python3 "$root/tests/net/mkmodel.py" "$work/data/v2.safetensors" "$n" 4194304 --seed 5 --change 0.1 --pad 4099
	v2size=$(stat -c %s "$work/data/v2.safetensors")
	fresh_llmfs
	mkdir "$mnt/models/v1" "$mnt/models/v2"
	cp "$work/data/v1.safetensors" "$mnt/models/v1/model.safetensors"
	cp "$work/data/v2.safetensors" "$mnt/models/v2/model.safetensors"
	mkdir -p "$mnt/net/lab/bench"
	cp -r "$mnt/models/v1" "$mnt/net/lab/bench/st:v1"
	cp -r "$mnt/models/v2" "$mnt/net/lab/bench/st/v2"
	s=$(sent bench/st:v2)
	umount_llmfs
	fresh_llmfs
	cp -r "$mnt/net/lab/bench/st/v1" "$mnt/models/v1"
	cp -r "$mnt/net/lab/bench/st/v2" "$mnt/models/v2"
	cmp "$work/data/v2.safetensors" "$mnt/models/v2/model.safetensors"
	got=$(fetched pull bench/st:v2)
	umount_llmfs
	r=$(ratio "$s" "$v2size"); r2=$(ratio "$got" "$v2size")
	echo "v2 after v1 ($(mib "$v2size") MiB, 10% of tensors changed, header +4099 B):" \
	     "push sent $s B = $r of v2 (goal <= 0.15, met: $(met "$r <= 0.15"));" \
	     "pull into a store holding v1 fetched $got B = $r2 of v2 (goal <= 0.15, met: $(met "$r2 <= 0.15"));" \
	     "an Ollama-style whole-file layer moves 1.000 both ways"
	rm -f "$work/data/v1.safetensors" "$work/data/v2.safetensors"
}

# 5. Lazy reads from an empty store: time to the first byte, and bytes
# fetched to read 1% of the file in 4 KiB reads at random offsets.
bench_lazy() {
	first=$(blobs "$url" bench/m v1 | sed -n 2p | cut -d' ' -f1)
	lt=; ct=
	for round in $(seq "$rounds"); do
		drop
		ct=$(minof "$ct" "$(timed curl -sf -r 0-0 -o /dev/null "$url/v2/bench/m/blobs/$first")")
		fresh_llmfs; drop
		lt=$(minof "$lt" "$(timed head -c 1 "$mnt/net/lab/bench/m/v1/$wfile")")
		umount_llmfs
	done
	echo "lazy first byte: llmfs head -c 1 ${lt}s (empty store, fresh daemon), curl ranged GET ${ct}s, ratio $(ratio "$ct" "$lt")"
	fsize=$(stat -c %s "$work/data/m/$wfile")
	# readat.py: Python's buffered seek + read(LEN) at any offset (a read
	# most often spans two pages, and the buffer is st_blksize); pread.py:
	# os.pread of LEN bytes at LEN-aligned offsets.  Both compare every
	# read with the source.  A fetch moves whole chunks (128 KiB on
	# average), so the read size decides what 1% costs.
	for spec in readat:4096 pread:4096 pread:65536 pread:1048576; do
		reader=${spec%:*} len=${spec#*:}
		reads=$((fsize / 100 / len))
		fresh_llmfs; drop
		t=$(timed python3 "$helper/$reader.py" "$work/data/m/$wfile" "$mnt/net/lab/bench/m/v1/$wfile" "$reads" 7 "$len")
		sleep 1	# a read-ahead the reads started ends in the transfers list
		got=$(fetched read bench/m:v1/$wfile)
		umount_llmfs
		r=$(ratio "$got" "$fsize")
		echo "lazy 1% read, $reader ($reads reads of $((len / 1024)) KiB at random offsets, all checked, ${t}s): fetched $got B = $r of the $fsize B file (goal <= 0.03, met: $(met "$r <= 0.03"))"
	done
}

# 6. Resume: kill -9 of the daemon halfway through a 512 MiB pull, remount,
# the same cp again.
bench_resume() {
	model "$work/data/r" "$resume_mib" 4
	fresh_llmfs
	cp -r "$work/data/r" "$mnt/models/r"
	mkdir -p "$mnt/net/lab/bench"
	cp -r "$mnt/models/r" "$mnt/net/lab/bench/r:v1"
	umount_llmfs
	wire=$(wire_bytes "$url" bench/r v1)
	fresh_llmfs
	cp -r "$mnt/net/lab/bench/r/v1" "$mnt/models/r" 2>/dev/null &
	cp_pid=$!
	dk=0; tk=0
	while :; do
		# shellcheck disable=SC2046
		set -- $(progress pull) 0 0
		dk=$1; tk=$2
		[ "$tk" -gt 0 ] && [ $((dk * 2)) -ge "$tk" ] && break
		kill -0 "$cp_pid" 2>/dev/null || { echo "resume: the pull ended before 50%"; break; }
		sleep 0.02
	done
	kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; pid=
	fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt"
	wait "$cp_pid" 2>/dev/null || true; cp_pid=
	mount_llmfs
	kept=$(stat_of pack_bytes)
	rm -rf "$mnt/models/r"
	cp -r "$mnt/net/lab/bench/r/v1" "$mnt/models/r"
	cmp "$work/data/r/$wfile" "$mnt/models/r/$wfile"
	got=$(fetched pull bench/r)
	umount_llmfs
	missing=$((wire - kept))
	# Stored bytes fetched again: second run less what was missing (ideal
	# 0).  Bytes moved twice in all: both runs less the blobs (what had
	# arrived but was not checked and committed when the daemon died).
	echo "resume of a $resume_mib MiB pull killed at $dk/$tk ($wire B of blobs): store kept $kept B of packs," \
	     "second run fetched $got B, missing were $missing B; stored bytes fetched again $((got - missing)) B" \
	     "($(mib $((got - missing))) MiB, ideal ~0); moved twice in all $((dk + got - wire)) B" \
	     "($(mib $((dk + got - wire))) MiB: in flight or unchecked at the kill); pulled file identical"
	rm -rf "$work/data/r"
}

helper=$work
wfile=model.safetensors
mkdir -p "$mnt" "$work/data"
gcc -O2 -o "$work/gen" "$src/gen-weights.c" -lm
write_helpers
port=$(free_port)
url=http://127.0.0.1:$port
reg_start
echo "# llmfs net/ benchmarks: $size MiB model, $rounds rounds, $conns connections, $(nproc) cores, $(date -u +%F)"
# ONLY="lazy resume" runs some figures (push must come before pull, lazy
# and v2: it puts the model on the registry).
only=${ONLY:-push pull lazy v2 resume slow}
model "$work/data/m" "$size" 1
for f in $only; do
	"bench_$f"
done
rm -rf "$work/data/m" "$work/blobs"
