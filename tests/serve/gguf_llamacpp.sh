#!/bin/sh
# tests/serve/gguf_llamacpp.sh - llama.cpp itself loads what llmfs-gguf exports.
#
# node-llama-cpp (npm; prebuilt llama.cpp binaries) is not a Debian package, so this test runs
# only where it is installed: NODE_LLAMA_CPP_DIR names a folder holding node_modules/
# node-llama-cpp (e.g. after `cd DIR && npm install node-llama-cpp`); without it the test
# skips.  For a GPT-2-vocabulary model and a byte model (random weights, PyTorch), it checks
# that llama.cpp's tokenizer gives GPT-2's ids and that llama.cpp's greedy tokens equal the
# PyTorch reference's.
: "${LLMFS_GGUF:?}" "${PYTHON:?}" "${SERVE_TESTS:?}" "${GPT2_DATA:?}"
. "$SERVE_TESTS/../mount/lib.sh"

[ -n "${NODE_LLAMA_CPP_DIR:-}" ] && [ -d "$NODE_LLAMA_CPP_DIR/node_modules/node-llama-cpp" ] ||
	skip_all "NODE_LLAMA_CPP_DIR does not hold node-llama-cpp (npm); see the script"
command -v node >/dev/null || skip_all "node is not installed"
"$PYTHON" -c 'import torch' 2>/dev/null || skip_all "python3-torch is not installed"
REF="$PYTHON $SERVE_TESTS/gpt2_ref.py"
cp "$SERVE_TESTS/llamacpp_run.mjs" "$NODE_LLAMA_CPP_DIR/llmfs-llamacpp-run.mjs"

# run_llama FILE PROMPT N: llama.cpp's output lines into $TEST_DIR/llama
run_llama() {
	(cd "$NODE_LLAMA_CPP_DIR" && node llmfs-llamacpp-run.mjs "$@") >"$TEST_DIR/llama" 2>"$TEST_DIR/llama.err"
}

test_expect_success "a GPT-2-vocabulary model: llama.cpp's tokens and greedy text = ours" '
	$REF make "$TEST_DIR/mini" --layers 2 --heads 2 --embd 32 --ctx 128 --vocab 50257 --seed 5 &&
	cp "$GPT2_DATA/vocab.json" "$GPT2_DATA/merges.txt" "$TEST_DIR/mini/" &&
	"$LLMFS_GGUF" export "$TEST_DIR/mini" "$TEST_DIR/mini.gguf" &&
	"$LLMFS_GGUF" check "$TEST_DIR/mini.gguf" --model "$TEST_DIR/mini" &&
	run_llama "$TEST_DIR/mini.gguf" "Hello world" 12 && cat "$TEST_DIR/llama" &&
	grep -qx "{\"tokens\":\[15496,995\]}" "$TEST_DIR/llama" &&
	want=$($REF greedy "$TEST_DIR/mini" 12 15496 995 | tr -d " ") &&
	grep -qF "\"generated\":$want" "$TEST_DIR/llama"
'

test_expect_success "a byte-vocabulary model: the same through llama.cpp" '
	$REF make "$TEST_DIR/tiny" --layers 2 --heads 2 --embd 32 --ctx 64 --vocab 256 --seed 6 &&
	"$LLMFS_GGUF" export "$TEST_DIR/tiny" "$TEST_DIR/tiny.gguf" &&
	run_llama "$TEST_DIR/tiny.gguf" "Hello" 12 && cat "$TEST_DIR/llama" &&
	grep -qx "{\"tokens\":\[72,101,108,108,111\]}" "$TEST_DIR/llama" &&
	want=$($REF greedy "$TEST_DIR/tiny" 12 72 101 108 108 111 | tr -d " ") &&
	grep -qF "\"generated\":$want" "$TEST_DIR/llama"
'

rm -f "$NODE_LLAMA_CPP_DIR/llmfs-llamacpp-run.mjs"
test_done
