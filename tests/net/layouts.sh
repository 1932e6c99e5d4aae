#!/bin/sh
# net/ reads models that other tools put on a registry (docs/layouts.md):
# an Ollama model in Ollama's own layout, a Docker Model Runner model, a
# CNCF ModelPack model with a nested path and a tar layer; each listed,
# read (whole and lazily) and pulled with cp -r through a real mount.  Then
# hostile manifests ("..", absolute and duplicate paths, sizes that disagree
# with the blobs) are refused without harm to the good tags, and a blob
# whose bytes do not match its digest reads as EIO (small, whole-blob
# files) and is never pulled (any size).
# The manifests are written by tests/net/pushlayout.py, not by llmfs.
. "$(dirname "$0")/lib-net.sh"

SRC=$TEST_DIR/src
NET=$MNT/net/lab

# push REPO TAG SPEC: the spec's blobs and manifest onto the registry.
push() {
	python3 "$NET_HELPERS/pushlayout.py" push "$REGISTRY_URL" \
		"$REGISTRY_USER" "$REGISTRY_PASS" "$@"
}

# names DIR: the files and folders under DIR, sorted, one a line.
names() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort)
}

# blobfile DIGEST: where the registry keeps the blob on disk.
blobfile() {
	h=${1#sha256:}
	echo "$TEST_DIR/registry/data/docker/registry/v2/blobs/sha256/$(echo "$h" | cut -c1-2)/$h/data"
}

# ---------------------------------------------------------------------------
# Every model goes onto the registry before the daemon starts: net/ caches
# a remote's catalog for 10 s (NET_TTL), so a repository pushed behind the
# daemon's back would show only after that.

test_expect_success "a registry, and an Ollama model in Ollama's layout" '
	net_registry_start auth &&
	mkdir -p "$SRC/ollama" &&
	python3 "$NET_HELPERS/pushlayout.py" gguf "$SRC/ollama/model.gguf" 3 40000 7 &&
	head -c 4 "$SRC/ollama/model.gguf" | grep -q GGUF &&
	printf "{{ .System }}\nUSER: {{ .Prompt }}\nASSISTANT: " > "$SRC/ollama/template" &&
	printf "{\"stop\":[\"USER:\"],\"temperature\":0.7}" > "$SRC/ollama/params" &&
	printf "Tiny test licence.\nDo what you like.\n" > "$SRC/ollama/LICENSE" &&
	printf "You are a terse assistant." > "$SRC/ollama/system" &&
	mh=$(sha256sum < "$SRC/ollama/model.gguf" | cut -d" " -f1) &&
	printf "{\"model_format\":\"gguf\",\"model_family\":\"llama\",\"model_families\":[\"llama\"],\"model_type\":\"0.1M\",\"file_type\":\"F32\",\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:%s\"]}}" \
		"$mh" > "$SRC/ollama/config.json" &&
	cat > "$SRC/ollama.spec" <<-EOF &&
	{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
	 "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "file": "ollama/config.json"},
	 "layers": [
	  {"mediaType": "application/vnd.ollama.image.model", "file": "ollama/model.gguf"},
	  {"mediaType": "application/vnd.ollama.image.template", "file": "ollama/template"},
	  {"mediaType": "application/vnd.ollama.image.params", "file": "ollama/params"},
	  {"mediaType": "application/vnd.ollama.image.license", "file": "ollama/LICENSE"},
	  {"mediaType": "application/vnd.ollama.image.system", "file": "ollama/system"}]}
	EOF
	push library/tiny latest "$SRC/ollama.spec"
'

test_expect_success "a Docker Model Runner model (gguf.v3, license, config v0.1)" '
	mkdir -p "$SRC/docker" &&
	python3 "$NET_HELPERS/pushlayout.py" gguf "$SRC/docker/model.gguf" 2 50000 9 &&
	printf "Apache-2.0, in short.\n" > "$SRC/docker/LICENSE" &&
	dh=$(sha256sum < "$SRC/docker/model.gguf" | cut -d" " -f1) &&
	printf "{\"config\":{\"format\":\"gguf\",\"quantization\":\"F32\",\"parameters\":\"0.1M\",\"architecture\":\"llama\",\"size\":\"%s\"},\"descriptor\":{\"created\":\"2025-01-01T00:00:00Z\"},\"rootfs\":{\"type\":\"rootfs\",\"diff_ids\":[\"sha256:%s\"]}}" \
		"$(stat -c %s "$SRC/docker/model.gguf")" "$dh" > "$SRC/docker/config.json" &&
	cat > "$SRC/docker.spec" <<-EOF &&
	{"mediaType": "application/vnd.oci.image.manifest.v1+json",
	 "config": {"mediaType": "application/vnd.docker.ai.model.config.v0.1+json", "file": "docker/config.json"},
	 "layers": [
	  {"mediaType": "application/vnd.docker.ai.gguf.v3", "file": "docker/model.gguf"},
	  {"mediaType": "application/vnd.docker.ai.license", "file": "docker/LICENSE"}]}
	EOF
	push ai/smollm2 Q4 "$SRC/docker.spec"
'

test_expect_success "a ModelPack model: raw layers, a nested path, a tar layer" '
	mkdir -p "$SRC/mp/tokenizer" "$SRC/mp/scripts/lib" "$SRC/mpblobs" &&
	python3 "$NET_HELPERS/mkmodel.py" "$SRC/mp/model.safetensors" 40 524288 --seed 3 &&
	python3 -c "import json; print(json.dumps({\"model\": {\"type\": \"BPE\", \"vocab\": {\"tok%d\" % i: i for i in range(3000)}}}))" \
		> "$SRC/mp/tokenizer/tokenizer.json" &&
	printf "# A test model\n\nNothing to see.\n" > "$SRC/mp/README.md" &&
	printf "print(\"hello\")\n" > "$SRC/mp/scripts/run.py" &&
	python3 -c "import random; r = random.Random(5); open(\"$SRC/mp/scripts/lib/blob.bin\", \"wb\").write(r.randbytes(300000))" &&
	printf "#!/bin/sh\necho util\n" > "$SRC/mp/scripts/lib/util.sh" &&
	(cd "$SRC/mp" && tar --format=ustar -cf "$SRC/mpblobs/scripts.tar" scripts) &&
	wh=$(sha256sum < "$SRC/mp/model.safetensors" | cut -d" " -f1) &&
	printf "{\"descriptor\":{\"name\":\"mp\"},\"modelfs\":{\"type\":\"layers\",\"diffIds\":[]},\"config\":{\"format\":\"safetensors\"}}" \
		> "$SRC/mp/config.json" &&
	cat > "$SRC/mp.spec" <<-EOF &&
	{"mediaType": "application/vnd.oci.image.manifest.v1+json",
	 "artifactType": "application/vnd.cncf.model.manifest.v1+json",
	 "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", "file": "mp/config.json"},
	 "layers": [
	  {"mediaType": "application/vnd.cncf.model.weight.v1.raw", "file": "mp/model.safetensors",
	   "annotations": {"org.cncf.model.filepath": "model.safetensors"}},
	  {"mediaType": "application/vnd.cncf.model.weight.config.v1.raw", "file": "mp/tokenizer/tokenizer.json",
	   "annotations": {"org.cncf.model.filepath": "tokenizer/tokenizer.json"}},
	  {"mediaType": "application/vnd.cncf.model.doc.v1.raw", "file": "mp/README.md",
	   "annotations": {"org.cncf.model.filepath": "README.md"}},
	  {"mediaType": "application/vnd.cncf.model.code.v1.tar", "file": "mpblobs/scripts.tar",
	   "annotations": {"org.cncf.model.filepath": "scripts"}}]}
	EOF
	push mp/m v1 "$SRC/mp.spec"
'

# hostile TAG LAYERS: a ModelPack manifest evil/m:TAG whose layers are the
# JSON LAYERS, on blobs made here.
hostile() {
	cat > "$SRC/evil-$1.spec" <<-EOF
	{"mediaType": "application/vnd.oci.image.manifest.v1+json",
	 "artifactType": "application/vnd.cncf.model.manifest.v1+json",
	 "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", "file": "mp/config.json"},
	 "layers": [$2]}
	EOF
	push evil/m "$1" "$SRC/evil-$1.spec"
}

test_expect_success "hostile manifests go onto the registry" '
	printf "x\n" > "$SRC/mpblobs/x" && printf "y\n" > "$SRC/mpblobs/y" &&
	raw=application/vnd.cncf.model.weight.config.v1.raw &&
	hostile dotdot "{\"mediaType\": \"$raw\", \"file\": \"mpblobs/x\", \"annotations\": {\"org.cncf.model.filepath\": \"../x\"}}" &&
	hostile deep "{\"mediaType\": \"$raw\", \"file\": \"mpblobs/x\", \"annotations\": {\"org.cncf.model.filepath\": \"a/../../../x\"}}" &&
	hostile abs "{\"mediaType\": \"$raw\", \"file\": \"mpblobs/x\", \"annotations\": {\"org.cncf.model.filepath\": \"/tmp/x\"}}" &&
	hostile dup "{\"mediaType\": \"$raw\", \"file\": \"mpblobs/x\", \"annotations\": {\"org.cncf.model.filepath\": \"a.txt\"}},
		{\"mediaType\": \"$raw\", \"file\": \"mpblobs/y\", \"annotations\": {\"org.cncf.model.filepath\": \"a.txt\"}}" &&
	tsize=$(stat -c %s "$SRC/mpblobs/scripts.tar") &&
	hostile tarbig "{\"mediaType\": \"application/vnd.cncf.model.code.v1.tar\", \"file\": \"mpblobs/scripts.tar\", \"size\": $((tsize + 4096)), \"annotations\": {\"org.cncf.model.filepath\": \"scripts\"}}" &&
	hostile tarsmall "{\"mediaType\": \"application/vnd.cncf.model.code.v1.tar\", \"file\": \"mpblobs/scripts.tar\", \"size\": $((tsize - 300000)), \"annotations\": {\"org.cncf.model.filepath\": \"scripts\"}}"
'

test_expect_success "hostile: raw layers with a size that disagrees with the blob" '
	cp "$SRC/mp/README.md" "$SRC/mpblobs/readme-big" && echo extra >> "$SRC/mpblobs/readme-big" &&
	cp "$SRC/mp/README.md" "$SRC/mpblobs/readme-small" && echo other >> "$SRC/mpblobs/readme-small" &&
	bsize=$(stat -c %s "$SRC/mpblobs/readme-big") &&
	hostile rawbig "{\"mediaType\": \"application/vnd.cncf.model.doc.v1.raw\", \"file\": \"mpblobs/readme-big\", \"size\": $((bsize + 10)), \"annotations\": {\"org.cncf.model.filepath\": \"README.md\"}}" &&
	hostile rawsmall "{\"mediaType\": \"application/vnd.cncf.model.doc.v1.raw\", \"file\": \"mpblobs/readme-small\", \"size\": 5, \"annotations\": {\"org.cncf.model.filepath\": \"README.md\"}}" &&
	python3 -c "import random, sys; open(sys.argv[1], \"wb\").write(random.Random(8).randbytes(17 << 20))" "$SRC/mpblobs/huge" &&
	hsize=$(stat -c %s "$SRC/mpblobs/huge") &&
	hostile rawhugebig "{\"mediaType\": \"application/vnd.cncf.model.weight.v1.raw\", \"file\": \"mpblobs/huge\", \"size\": $((hsize + 1000)), \"annotations\": {\"org.cncf.model.filepath\": \"model.bin\"}}" &&
	hostile rawhugesmall "{\"mediaType\": \"application/vnd.cncf.model.weight.v1.raw\", \"file\": \"mpblobs/huge\", \"size\": $((hsize - 1000)), \"annotations\": {\"org.cncf.model.filepath\": \"model.bin\"}}"
'

test_expect_success "a blob corrupted in the registry's storage (same length)" '
	mkdir -p "$SRC/bad" &&
	printf "This is the real licence text, a few lines long.\nAnd a second line.\n" > "$SRC/bad/LICENSE" &&
	cp "$SRC/ollama/model.gguf" "$SRC/bad/model.gguf" &&
	cat > "$SRC/bad.spec" <<-EOF &&
	{"mediaType": "application/vnd.oci.image.manifest.v1+json",
	 "config": {"mediaType": "application/vnd.docker.ai.model.config.v0.1+json", "file": "docker/config.json"},
	 "layers": [
	  {"mediaType": "application/vnd.docker.ai.gguf.v3", "file": "bad/model.gguf"},
	  {"mediaType": "application/vnd.docker.ai.license", "file": "bad/LICENSE"}]}
	EOF
	push bad/m v1 "$SRC/bad.spec" &&
	lh=$(sha256sum < "$SRC/bad/LICENSE" | cut -d" " -f1) &&
	bf=$(blobfile "sha256:$lh") && [ -f "$bf" ] &&
	sed "s/real/fake/" "$SRC/bad/LICENSE" > "$TEST_DIR/corrupt" &&
	[ "$(stat -c %s "$TEST_DIR/corrupt")" = "$(stat -c %s "$SRC/bad/LICENSE")" ] &&
	cat "$TEST_DIR/corrupt" > "$bf" &&
	rcurl "$REGISTRY_URL/v2/bad/m/blobs/sha256:$lh" | grep -q fake
'

test_expect_success "a large (range-read) blob corrupted in the registry's storage" '
	mkdir -p "$SRC/badbig" &&
	python3 -c "import random, sys; open(sys.argv[1], \"wb\").write(random.Random(9).randbytes(17 << 20))" "$SRC/badbig/model.bin" &&
	cat > "$SRC/badbig.spec" <<-EOF &&
	{"mediaType": "application/vnd.oci.image.manifest.v1+json",
	 "artifactType": "application/vnd.cncf.model.manifest.v1+json",
	 "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", "file": "mp/config.json"},
	 "layers": [{"mediaType": "application/vnd.cncf.model.weight.v1.raw", "file": "badbig/model.bin",
	   "annotations": {"org.cncf.model.filepath": "model.bin"}}]}
	EOF
	push bad/big v1 "$SRC/badbig.spec" &&
	bf=$(blobfile "sha256:$(sha256sum < "$SRC/badbig/model.bin" | cut -d" " -f1)") &&
	printf "CORRUPTED" | dd of="$bf" bs=1 seek=9000000 conv=notrunc 2>/dev/null &&
	! cmp -s "$bf" "$SRC/badbig/model.bin"
'

test_expect_success "the daemon starts with the registry as remote lab" '
	net_remotes "$STORE" lab "$REGISTRY_URL" "$REGISTRY_USER" "$REGISTRY_PASS" &&
	daemon_start
'

# ---------------------------------------------------------------------------
# Ollama

test_expect_success "ollama: the tag lists model.gguf template params LICENSE system config.json" '
	[ "$(ls "$NET/library/tiny/latest" | LC_ALL=C sort | tr "\n" " ")" = \
		"LICENSE config.json model.gguf params system template " ] &&
	[ "$(stat -c %s "$NET/library/tiny/latest/model.gguf")" = "$(stat -c %s "$SRC/ollama/model.gguf")" ]
'

test_expect_success "ollama: cat of each file equals the source" '
	for f in model.gguf template params LICENSE system config.json; do
		cat "$NET/library/tiny/latest/$f" | cmp - "$SRC/ollama/$f" || return 1
	done
'

test_expect_success "ollama: head -c 4096 model.gguf is the source's first 4 KiB" '
	head -c 4096 "$NET/library/tiny/latest/model.gguf" > "$TEST_DIR/head" &&
	head -c 4096 "$SRC/ollama/model.gguf" | cmp - "$TEST_DIR/head"
'

test_expect_success "ollama: .smip/info says layout: ollama, with media types and digests" '
	cat "$NET/library/tiny/latest/.smip/info" > "$TEST_DIR/info" &&
	sed "s/^/# /" "$TEST_DIR/info" &&
	grep -qx "layout: ollama" "$TEST_DIR/info" &&
	grep -q "^  model.gguf [0-9]* application/vnd.ollama.image.model sha256:$mh$" "$TEST_DIR/info" &&
	grep -q "^  template .* application/vnd.ollama.image.template sha256:" "$TEST_DIR/info" &&
	python3 -c "import json, sys; json.load(sys.stdin)" < "$NET/library/tiny/latest/.smip/oci-manifest.json" &&
	grep -q application/vnd.ollama.image.license "$NET/library/tiny/latest/.smip/oci-manifest.json"
'

test_expect_success "ollama: cp -r of the tag into models/ gives identical files" '
	cp -r "$NET/library/tiny/latest" "$MNT/models/tiny" &&
	[ "$(names "$MNT/models/tiny")" = "$(names "$SRC/ollama")" ] &&
	diff -r "$SRC/ollama" "$MNT/models/tiny" &&
	sed "s/^/# /" "$MNT/.llmfs/transfers" &&
	grep -q "^pull lab/library/tiny:latest/model.gguf .* done" "$MNT/.llmfs/transfers"
'

# ---------------------------------------------------------------------------
# Docker Model Runner

test_expect_success "docker: the tag lists model.gguf LICENSE config.json" '
	[ "$(ls "$NET/ai/smollm2/Q4" | LC_ALL=C sort | tr "\n" " ")" = "LICENSE config.json model.gguf " ]
'

test_expect_success "docker: cat of each file equals the source, head -c 4096 too" '
	for f in model.gguf LICENSE config.json; do
		cat "$NET/ai/smollm2/Q4/$f" | cmp - "$SRC/docker/$f" || return 1
	done &&
	head -c 4096 "$NET/ai/smollm2/Q4/model.gguf" > "$TEST_DIR/head" &&
	head -c 4096 "$SRC/docker/model.gguf" | cmp - "$TEST_DIR/head"
'

test_expect_success "docker: .smip/info says layout: docker" '
	cat "$NET/ai/smollm2/Q4/.smip/info" > "$TEST_DIR/info" &&
	sed "s/^/# /" "$TEST_DIR/info" &&
	grep -qx "layout: docker" "$TEST_DIR/info" &&
	grep -q "^  model.gguf [0-9]* application/vnd.docker.ai.gguf.v3 sha256:$dh$" "$TEST_DIR/info"
'

test_expect_success "docker: cp -r into models/ gives identical files, and the pull is listed" '
	cp -r "$NET/ai/smollm2/Q4" "$MNT/models/smol" &&
	[ "$(names "$MNT/models/smol")" = "$(names "$SRC/docker")" ] &&
	diff -r "$SRC/docker" "$MNT/models/smol" &&
	grep -q "^pull lab/ai/smollm2:Q4/model.gguf .* done" "$MNT/.llmfs/transfers"
'

# ---------------------------------------------------------------------------
# CNCF ModelPack

test_expect_success "modelpack: the files and folders are listed, with their sizes" '
	names "$NET/mp/m/v1" | sed "s/^/# /" &&
	[ "$(names "$NET/mp/m/v1")" = "$(names "$SRC/mp")" ] &&
	for f in model.safetensors tokenizer/tokenizer.json scripts/lib/blob.bin scripts/run.py; do
		[ "$(stat -c %s "$NET/mp/m/v1/$f")" = "$(stat -c %s "$SRC/mp/$f")" ] || return 1
	done &&
	cat "$NET/mp/m/v1/.smip/info" > "$TEST_DIR/info" && sed "s/^/# /" "$TEST_DIR/info" &&
	grep -qx "layout: modelpack" "$TEST_DIR/info" &&
	grep -q "^  scripts/run.py .* (inside)$" "$TEST_DIR/info"
'

# readat.py reads through Python's buffered files, whose buffer is the
# file's st_blksize (1 MiB here): it checks bytes, not what was fetched.
# The count is taken from unbuffered preads on a fresh handle.
test_expect_success "modelpack: lazy reads at random offsets equal the source" '
	python3 "$NET_HELPERS/readat.py" "$SRC/mp/model.safetensors" "$NET/mp/m/v1/model.safetensors" 12 2 5000 &&
	python3 "$NET_HELPERS/readat.py" "$SRC/mp/scripts/lib/blob.bin" "$NET/mp/m/v1/scripts/lib/blob.bin" 12 3 777 &&
	python3 "$NET_HELPERS/readat.py" "$SRC/mp/tokenizer/tokenizer.json" "$NET/mp/m/v1/tokenizer/tokenizer.json" 6 4 100 &&
	cmp "$SRC/mp/scripts/run.py" "$NET/mp/m/v1/scripts/run.py" &&
	cmp "$SRC/mp/scripts/lib/util.sh" "$NET/mp/m/v1/scripts/lib/util.sh" &&
	python3 -c "
import os, random, sys
a = os.open(sys.argv[1], os.O_RDONLY); b = os.open(sys.argv[2], os.O_RDONLY)
size = os.fstat(a).st_size; rng = random.Random(11)
for _ in range(8):
    off = rng.randrange(0, size - 5000)
    if os.pread(a, 5000, off) != os.pread(b, 5000, off):
        sys.exit(\"differ at %d\" % off)
" "$SRC/mp/model.safetensors" "$NET/mp/m/v1/model.safetensors" &&
	got=$(net_fetched read model.safetensors) && size=$(stat -c %s "$SRC/mp/model.safetensors") &&
	say "# 8 preads of 5000 bytes fetched $got of $size bytes" &&
	[ "$got" -gt 0 ] && [ "$got" -lt 1048576 ]
'

test_expect_success "modelpack: cp -r into models/ gives identical files" '
	cp -r "$NET/mp/m/v1" "$MNT/models/mp" &&
	[ "$(names "$MNT/models/mp")" = "$(names "$SRC/mp")" ] &&
	diff -r "$SRC/mp" "$MNT/models/mp" &&
	grep -q "^pull lab/mp/m:v1/model.safetensors .* done" "$MNT/.llmfs/transfers" &&
	say "# tar layer pulls: $(grep -c "^pull lab/mp/m:v1/scripts/" "$MNT/.llmfs/transfers")" &&
	[ "$(grep -c "^pull lab/mp/m:v1/scripts/" "$MNT/.llmfs/transfers")" = 1 ]
'

# ---------------------------------------------------------------------------
# Hostile manifests

# refused TAG WHAT: ls of the tag fails, and the daemon log says why in one
# line naming the tag and WHAT (an ERE).
refused() {
	if ls "$NET/evil/m/$1" > "$TEST_DIR/ls.out" 2> "$TEST_DIR/ls.err"; then
		say "# BUG: ls of evil/m/$1 succeeded, listing $(wc -l < "$TEST_DIR/ls.out") names:"
		sed "s/^/#   /" "$TEST_DIR/ls.out"
		say "# stat: $(stat -c "%A %F" "$NET/evil/m/$1")"
		grep "llmfs: error: net/lab/evil/m/$1: " "$DAEMON_LOG" | tail -1 | sed "s/^/# log: /"
		return 1
	fi
	say "# $(cat "$TEST_DIR/ls.err")" &&
	grep -Eq "Invalid argument|Input/output error|No such file" "$TEST_DIR/ls.err" &&
	grep "llmfs: error: net/lab/evil/m/$1: " "$DAEMON_LOG" | tail -1 | sed "s/^/# log: /" &&
	grep "llmfs: error: net/lab/evil/m/$1: " "$DAEMON_LOG" | grep -Eq -- "$2"
}

ALLOWED_ERRORS="llmfs: error: net/lab/evil/m/"

# A tag whose manifest layout_parse refuses is an error (EIO), with the
# reason in the log, not an empty folder.
test_expect_success "hostile: a layer filepath \"../x\" is refused" '
	refused dotdot "unsafe path .*\.\./x"
'

test_expect_success "hostile: a filepath climbing out through a folder is refused" '
	refused deep "unsafe path .*a/\.\./\.\./\.\./x"
'

test_expect_success "hostile: an absolute filepath is refused" '
	refused abs "unsafe path .*/tmp/x"
'

test_expect_success "hostile: duplicate paths are refused" '
	refused dup "duplicate path .*a\.txt"
'

test_expect_success "hostile: a tar layer claiming more bytes than its blob is refused" '
	refused tarbig "tar in sha256:[0-9a-f]*: no block at [0-9]*, though the manifest says [0-9]* bytes"
'

test_expect_success "hostile: a tar layer claiming fewer bytes than its blob is refused" '
	refused tarsmall "tar in sha256:[0-9a-f]*: .*(past|truncated)"
'

test_expect_success "hostile: nothing escaped the tag folders" '
	! [ -e "$NET/evil/x" ] && ! [ -e "$NET/x" ] && ! [ -e "$MNT/net/x" ] &&
	! [ -e "$MNT/x" ] && ! [ -e "$NET/evil/m/x" ] && ! [ -e "$NET/evil/m/a.txt" ] &&
	! [ -e "$STORE/x" ] && ! [ -e "$TEST_DIR/x" ] &&
	[ "$(ls "$MNT/models" | LC_ALL=C sort | tr "\n" " ")" = "mp smol tiny " ] &&
	ls "$NET/evil/m" | LC_ALL=C sort | sed "s/^/# /"
'

test_expect_success "hostile: the daemon keeps serving the good tags" '
	cmp "$SRC/ollama/model.gguf" "$NET/library/tiny/latest/model.gguf" &&
	cmp "$SRC/docker/LICENSE" "$NET/ai/smollm2/Q4/LICENSE" &&
	diff -r "$SRC/mp" "$NET/mp/m/v1" &&
	diff -r "$SRC/ollama" "$MNT/models/tiny"
'

# A raw layer whose claimed size disagrees with its blob cannot be refused
# at ls without asking the registry for every blob's size; reading it must
# then fail (EIO) rather than show a file of the wrong length, and a pull
# must not store it.
# rawbad TAG [FILE]: ls refused, or FILE (README.md) can be neither read nor
# pulled.
rawbad() {
	rf=${2:-README.md}
	if ! ls "$NET/evil/m/$1" > /dev/null 2>&1; then
		say "# ls of evil/m/$1 refused"
		grep "llmfs: error: net/lab/evil/m/$1: " "$DAEMON_LOG" | tail -1 | sed "s/^/# log: /"
		return 0
	fi
	rb=0
	say "# evil/m/$1/$rf: stat size $(stat -c %s "$NET/evil/m/$1/$rf")"
	if cat "$NET/evil/m/$1/$rf" > "$TEST_DIR/got" 2> "$TEST_DIR/err"; then
		say "# BUG: cat succeeded, $(stat -c %s "$TEST_DIR/got") bytes:"
		[ "$(stat -c %s "$TEST_DIR/got")" -gt 4096 ] || awk '{ print "#   " $0 }' "$TEST_DIR/got"
		rb=1
	else
		grep -q "Input/output error" "$TEST_DIR/err" || { cat "$TEST_DIR/err"; rb=1; }
	fi
	if cp -r "$NET/evil/m/$1" "$MNT/models/evil-$1" 2> "$TEST_DIR/err"; then
		say "# BUG: the pull succeeded: models/evil-$1/$rf has $(stat -c %s "$MNT/models/evil-$1/$rf") bytes:"
		[ "$(stat -c %s "$MNT/models/evil-$1/$rf")" -gt 4096 ] || awk '{ print "#   " $0 }' "$MNT/models/evil-$1/$rf"
		rb=1
	else
		sed "s/^/# /" "$TEST_DIR/err"
	fi
	rm -rf "$MNT/models/evil-$1"
	return $rb
}

# A layer whose declared size disagrees with its blob is EIO to cat and a
# failed pull: blobs up to 16 MiB are read whole, larger ones by HTTP range,
# where the Content-Range total (bytes a-b/TOTAL) gives the real size.
test_expect_success "hostile: a raw layer claiming more bytes than its blob is not served" '
	rawbad rawbig
'

test_expect_success "hostile: a raw layer claiming fewer bytes than its blob is not served" '
	rawbad rawsmall
'

test_expect_success "hostile: a large (range-read) raw layer claiming more bytes is not served" '
	rawbad rawhugebig model.bin
'

test_expect_success "hostile: a large (range-read) raw layer claiming fewer bytes is not served" '
	rawbad rawhugesmall model.bin
'

# ---------------------------------------------------------------------------
# A blob whose bytes do not match its digest

# A pull that fails leaves these behind in the daemon's log too.
ALLOWED_ERRORS="llmfs: error: (net/lab/(evil/m/|bad/m/|bad/big/)|models/(evil-raw[a-z]*/(README.md|model.bin)|bad/LICENSE|badbig/model.bin|LICENSE-bad): (cannot store|new content not stored))"

test_expect_success "corrupt blob: reading the file gives EIO, with a clear log line" '
	[ "$(ls "$NET/bad/m/v1" | LC_ALL=C sort | tr "\n" " ")" = "LICENSE config.json model.gguf " ] &&
	! cat "$NET/bad/m/v1/LICENSE" > "$TEST_DIR/got" 2> "$TEST_DIR/err" &&
	grep -q "Input/output error" "$TEST_DIR/err" &&
	! grep -q fake "$TEST_DIR/got" &&
	grep "llmfs: error: net/lab/bad/m/v1/LICENSE: " "$DAEMON_LOG" | tail -1 | sed "s/^/# /" &&
	grep "llmfs: error: net/lab/bad/m/v1/LICENSE: " "$DAEMON_LOG" | grep -qi "digest" &&
	cmp "$SRC/bad/model.gguf" "$NET/bad/m/v1/model.gguf"
'

test_expect_success "corrupt blob: a pull fails and leaves no wrong bytes in models/" '
	! cp -r "$NET/bad/m/v1" "$MNT/models/bad" 2> "$TEST_DIR/err" &&
	sed "s/^/# /" "$TEST_DIR/err" &&
	! grep -rq fake "$MNT/models" &&
	{ ! [ -e "$MNT/models/bad/LICENSE" ] || ! [ -s "$MNT/models/bad/LICENSE" ]; } &&
	grep "^pull lab/bad/m:v1/LICENSE" "$MNT/.llmfs/transfers" | sed "s/^/# /"
'

test_expect_success "corrupt blob: a single-file cp fails the same way" '
	! cp "$NET/bad/m/v1/LICENSE" "$MNT/models/LICENSE-bad" 2> "$TEST_DIR/err" &&
	sed "s/^/# /" "$TEST_DIR/err" &&
	! grep -q fake "$MNT/models/LICENSE-bad" 2>/dev/null
'

# Range reads of a large blob cannot be checked against its digest (only
# the whole blob can), so a lazy read there shows what the registry sends;
# a pull streams the whole blob and must refuse it.
test_expect_success "corrupt large blob: a pull fails and stores nothing" '
	! cp -r "$NET/bad/big/v1" "$MNT/models/badbig" 2> "$TEST_DIR/err" &&
	sed "s/^/# /" "$TEST_DIR/err" &&
	! [ -s "$MNT/models/badbig/model.bin" ] &&
	grep "llmfs: error: net/lab/bad/big/v1/model.bin: " "$DAEMON_LOG" | tail -1 | sed "s/^/# log: /" &&
	grep "llmfs: error: net/lab/bad/big/v1/model.bin: " "$DAEMON_LOG" | grep -qi digest
'

test_expect_success "the good models are intact, and the daemon stops cleanly" '
	diff -r "$SRC/ollama" "$MNT/models/tiny" &&
	diff -r "$SRC/docker" "$MNT/models/smol" &&
	diff -r "$SRC/mp" "$MNT/models/mp" &&
	daemon_stop
'

test_done
