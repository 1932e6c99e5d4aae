#!/bin/sh
# tests/serve/http.sh - the real llmfs-serve, over a unix socket and a loopback port, with curl.
#
# Two models made by tests/serve/gpt2_ref.py (PyTorch, random weights, Hugging Face layout):
# "tiny", llmfs's byte vocabulary (256), and "mini", GPT-2's vocabulary (50257) with the real
# vocab.json + merges.txt beside it.  What the server says is checked against the PyTorch
# reference (greedy text), against itself (stream = whole answer, same seed = same text) and
# against OpenAI's shapes and error codes.
#
# Environment: SERVE (llmfs-serve), PYTHON (with torch), SERVE_TESTS (this folder),
# GPT2_DATA (tests/data/gpt2), LLMFS (for lib.sh; no mount is made).
: "${SERVE:?}" "${PYTHON:?}" "${SERVE_TESTS:?}" "${GPT2_DATA:?}"
. "$SERVE_TESTS/../mount/lib.sh"

command -v curl >/dev/null || skip_all "curl is not installed"
"$PYTHON" -c 'import torch' 2>/dev/null || skip_all "python3-torch is not installed"

REF="$PYTHON $SERVE_TESTS/gpt2_ref.py"
U="$PYTHON $SERVE_TESTS/http_util.py"
SOCK=$TEST_DIR/serve.sock
serve_n=0

# post PATH BODY [curl options]: POST to the unix socket; the body lands in $TEST_DIR/out, the
# status in $CODE.
post() {
	p_path=$1 p_body=$2; shift 2
	CODE=$(curl -s -o "$TEST_DIR/out" -w '%{http_code}' --max-time 60 --unix-socket "$SOCK" \
		-H 'Content-Type: application/json' --data-binary "$p_body" "$@" "http://x$p_path")
}

# field KEY.PATH: a field of the last answer
field() { $U get "$TEST_DIR/out" "$1"; }

# expect_error STATUS TYPE CODE: the last answer is that error, in OpenAI's shape
expect_error() {
	[ "$CODE" = "$1" ] || { say "status $CODE, want $1: $(cat "$TEST_DIR/out")"; return 1; }
	[ "$(field error.type)" = "$2" ] &&
	[ "$(field error.code)" = "$3" ] &&
	[ -n "$(field error.message)" ]
}

# start_server ARGS...: one server at a time, its stderr in serve.N.log ($LOG)
start_server() {
	serve_n=$((serve_n + 1))
	LOG=$TEST_DIR/serve.$serve_n.log
	spawn serve sh -c 'exec "$@" 2>"$0"' "$LOG" "$SERVE" "$@" &&
	wait_for 60 'grep -q "llmfs-serve: model" "$LOG" || [ -f "$TEST_DIR/serve.rc" ]' &&
	[ ! -f "$TEST_DIR/serve.rc" ] &&
	PORT=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$LOG")
}

test_expect_success "make a byte-vocabulary model and a GPT-2-vocabulary model" '
	$REF make "$TEST_DIR/tiny" --layers 2 --heads 2 --embd 32 --ctx 64 --vocab 256 --seed 1 &&
	$REF make "$TEST_DIR/mini" --layers 2 --heads 2 --embd 32 --ctx 128 --vocab 50257 \
		--seed 2 --prefix transformer. --extra &&
	cp "$GPT2_DATA/vocab.json" "$GPT2_DATA/merges.txt" "$TEST_DIR/mini/" &&
	$REF make "$TEST_DIR/slow" --layers 4 --heads 4 --embd 256 --ctx 1024 --vocab 256 --seed 3
'

test_expect_success "a bad command line is refused with a message" '
	"$SERVE" --model "$TEST_DIR/tiny" 2>"$TEST_DIR/err"; test $? -eq 2 &&
	grep -q usage "$TEST_DIR/err" &&
	"$SERVE" --model "$TEST_DIR/nothere" --listen "unix:$TEST_DIR/x.sock" 2>"$TEST_DIR/err"
	test $? -eq 1 && grep -q "nothere: cannot load the model" "$TEST_DIR/err" &&
	"$SERVE" --model "$TEST_DIR/tiny" --listen 999.0.0.1:1 2>"$TEST_DIR/err"; test $? -eq 1 &&
	grep -q "cannot listen on 999.0.0.1:1" "$TEST_DIR/err"
'

test_expect_success "the server starts on a unix socket and a loopback port" '
	start_server --model "$TEST_DIR/tiny" --model "$TEST_DIR/mini" --name mini \
		--model "$TEST_DIR/slow" --listen "unix:$SOCK" --listen 127.0.0.1:0 \
		--max-body 65536 --max-queue 64 &&
	test -S "$SOCK" && test -n "$PORT"
'

test_expect_success "/health and /v1/models on both" '
	curl -sf --unix-socket "$SOCK" http://x/health >"$TEST_DIR/out" &&
	test "$(field status)" = ok &&
	curl -sf "http://127.0.0.1:$PORT/health" >"$TEST_DIR/out" &&
	test "$(field models)" = 3 &&
	curl -sf "http://127.0.0.1:$PORT/v1/models" >"$TEST_DIR/out" &&
	test "$(field object)" = list &&
	test "$(field data.0.id)" = tiny && test "$(field data.1.id)" = mini &&
	test "$(field data.1.context_length)" = 128 && test "$(field data.1.tokenizer)" = gpt2-bpe &&
	test "$(field data.0.tokenizer)" = bytes
'

test_expect_success "greedy completion = the PyTorch reference (bytes model)" '
	post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"Hello\",\"max_tokens\":12,\"temperature\":0}" &&
	test "$CODE" = 200 && test "$(field object)" = text_completion &&
	test "$(field choices.0.finish_reason)" = length &&
	test "$(field usage.prompt_tokens)" = 5 && test "$(field usage.completion_tokens)" = 12 &&
	test "$(field usage.total_tokens)" = 17 &&
	ids=$($REF greedy "$TEST_DIR/tiny" 12 72 101 108 108 111 | tr -d "[],") &&
	want=$($U decode bytes $ids) &&
	got=$($U get "$TEST_DIR/out" choices.0.text | $PYTHON -c "import json,sys; print(json.dumps(sys.stdin.read()[:-1]))") &&
	say "want $want got $got" && test "$want" = "$got"
'

test_expect_success "greedy completion = the PyTorch reference (GPT-2 BPE, over TCP)" '
	CODE=$(curl -s -o "$TEST_DIR/out" -w "%{http_code}" "http://127.0.0.1:$PORT/v1/completions" \
		-d "{\"model\":\"mini\",\"prompt\":\"Hello world\",\"max_tokens\":10,\"temperature\":0}") &&
	test "$CODE" = 200 && test "$(field usage.prompt_tokens)" = 2 &&
	ids=$($REF greedy "$TEST_DIR/mini" 10 15496 995 | tr -d "[],") &&
	want=$($U decode "$TEST_DIR/mini" $ids) &&
	got=$($U get "$TEST_DIR/out" choices.0.text | $PYTHON -c "import json,sys; print(json.dumps(sys.stdin.read()[:-1]))") &&
	say "want $want got $got" && test "$want" = "$got"
'

test_expect_success "the same seed gives the same text; sampling options are taken" '
	b="{\"model\":\"mini\",\"prompt\":\"Once upon a time\",\"max_tokens\":20,\"seed\":7,\"temperature\":0.9,\"top_p\":0.9,\"top_k\":50}" &&
	post /v1/completions "$b" && test "$CODE" = 200 && a=$(field choices.0.text) &&
	post /v1/completions "$b" && test "$CODE" = 200 && test "$(field choices.0.text)" = "$a" &&
	post /v1/completions "$(echo "$b" | sed s/:7,/:8,/)" && test "$CODE" = 200 &&
	test "$(field choices.0.text)" != "$a"
'

test_expect_success "chat completion" '
	post /v1/chat/completions "{\"model\":\"mini\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}]}],\"max_tokens\":8,\"seed\":1}" &&
	test "$CODE" = 200 && test "$(field object)" = chat.completion &&
	test "$(field choices.0.message.role)" = assistant &&
	test "$(field usage.completion_tokens)" -le 8 && test "$(field usage.prompt_tokens)" -gt 5
'

test_expect_success "stream: the events add up to the whole answer, usage included" '
	for ep in completions chat/completions; do
		if [ $ep = completions ]; then in="\"prompt\":\"The\""; else
			in="\"messages\":[{\"role\":\"user\",\"content\":\"The\"}]"; fi
		b="{\"model\":\"mini\",$in,\"max_tokens\":25,\"seed\":3"
		post /v1/$ep "$b}" && test "$CODE" = 200 && cp "$TEST_DIR/out" "$TEST_DIR/whole" &&
		post /v1/$ep "$b,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" \
			-D "$TEST_DIR/headers" && test "$CODE" = 200 &&
		grep -qi "^content-type: text/event-stream" "$TEST_DIR/headers" &&
		$U sse "$TEST_DIR/out" >"$TEST_DIR/sum" && cat "$TEST_DIR/sum" &&
		if [ $ep = completions ]; then k=choices.0.text; else k=choices.0.message.content; fi &&
		test "$($U get "$TEST_DIR/sum" text)" = "$($U get "$TEST_DIR/whole" $k)" &&
		test "$($U get "$TEST_DIR/sum" finish)" = "$($U get "$TEST_DIR/whole" choices.0.finish_reason)" &&
		test "$($U get "$TEST_DIR/sum" usage)" = "$($U get "$TEST_DIR/whole" usage)" || return 1
	done &&
	test "$($U get "$TEST_DIR/sum" role)" = assistant &&
	test "$($U get "$TEST_DIR/sum" objects)" = "[\"chat.completion.chunk\"]"
'

test_expect_success "stop strings end the text before them, streamed or not" '
	b="{\"model\":\"mini\",\"prompt\":\"In the\",\"max_tokens\":40,\"temperature\":0" &&
	post /v1/completions "$b}" && full=$(field choices.0.text) &&
	stop=$(printf "%s" "$full" | $PYTHON -c "import sys,json; t=sys.stdin.read(); print(json.dumps(t[len(t)//2:len(t)//2+3]))") &&
	prefix=$(printf "%s" "$full" | $PYTHON -c "import sys,json; t=sys.stdin.read(); s=json.loads(sys.argv[1]); print(t[:t.index(s)])" "$stop") &&
	say "stop $stop" &&
	post /v1/completions "$b,\"stop\":[\"never-there\",$stop]}" &&
	test "$(field choices.0.finish_reason)" = stop && test "$(field choices.0.text)" = "$prefix" &&
	test "$(field usage.completion_tokens)" -lt 40 &&
	post /v1/completions "$b,\"stop\":$stop,\"stream\":true}" &&
	$U sse "$TEST_DIR/out" >"$TEST_DIR/sum" &&
	test "$($U get "$TEST_DIR/sum" finish)" = stop &&
	test "$($U get "$TEST_DIR/sum" text)" = "$prefix"
'

test_expect_success "max_tokens bounds the answer; 0 gives none; past the context it is cut" '
	post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"ab\",\"max_tokens\":3}" &&
	test "$(field usage.completion_tokens)" = 3 &&
	post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"ab\",\"max_tokens\":0}" &&
	test "$(field usage.completion_tokens)" = 0 && test "$(field choices.0.text)" = "" &&
	test "$(field choices.0.finish_reason)" = length &&
	post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"ab\",\"max_tokens\":1000}" &&
	test "$CODE" = 200 && test "$(field usage.total_tokens)" = 64 &&
	test "$(field choices.0.finish_reason)" = length
'

test_expect_success "malformed JSON and bad fields: 400 in OpenAI's error shape" '
	post /v1/completions "{\"model\": \"tiny\", \"prompt\": " &&
	expect_error 400 invalid_request_error null &&
	field error.message | grep -q "could not parse the JSON body" &&
	post /v1/completions "[1,2]" && expect_error 400 invalid_request_error null &&
	post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"x\",\"temperature\":\"hot\"}" &&
	expect_error 400 invalid_request_error null && test "$(field error.param)" = temperature &&
	post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"x\",\"n\":2}" &&
	test "$CODE" = 400 && test "$(field error.param)" = n &&
	post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"x\",\"stop\":[1]}" &&
	test "$CODE" = 400 && test "$(field error.param)" = stop &&
	long_stop=$(head -c 300 /dev/zero | tr "\0" s) &&
	post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"x\",\"stop\":\"$long_stop\"}" &&
	test "$CODE" = 400 && test "$(field error.param)" = stop &&
	post /v1/chat/completions "{\"model\":\"tiny\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}" &&
	test "$CODE" = 400 && test "$(field error.param)" = messages &&
	post /v1/completions "{\"model\":\"mini\",\"prompt\":[50257]}" &&
	test "$CODE" = 400 && test "$(field error.param)" = prompt &&
	printf "{\"model\":\"tiny\",\"prompt\":\"\\377\"}" >"$TEST_DIR/bad-utf8" &&
	post /v1/completions "@$TEST_DIR/bad-utf8" && test "$CODE" = 400
'

test_expect_success "unknown model: 404; unknown path: 404; wrong method: 405" '
	post /v1/completions "{\"model\":\"gpt-5\",\"prompt\":\"x\"}" &&
	expect_error 404 invalid_request_error model_not_found &&
	test "$(field error.param)" = model &&
	post /v2/nothing "{}" && expect_error 404 invalid_request_error not_found &&
	CODE=$(curl -s -o "$TEST_DIR/out" -w "%{http_code}" --unix-socket "$SOCK" http://x/v1/completions) &&
	expect_error 405 invalid_request_error method_not_allowed
'

test_expect_success "huge prompts: 400 past the context, 413 past --max-body" '
	long=$(head -c 100 /dev/zero | tr "\0" a) &&
	post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"$long\"}" &&
	expect_error 400 invalid_request_error context_length_exceeded &&
	field error.message | grep -q "maximum context length is 64" &&
	post /v1/chat/completions "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}]}" &&
	expect_error 400 invalid_request_error context_length_exceeded &&
	head -c 200000 /dev/zero | tr "\0" a | sed "s/^/{\"model\":\"tiny\",\"prompt\":\"/; s/\$/\"}/" >"$TEST_DIR/big" &&
	post /v1/completions "@$TEST_DIR/big" &&
	expect_error 413 invalid_request_error request_too_large
'

test_expect_success "40 requests at once are queued and all answered" '
	i=0 pids= &&
	while [ $i -lt 40 ]; do
		if [ $((i % 2)) = 0 ]; then s=true; else s=false; fi
		if [ $((i % 3)) = 0 ]; then a="--unix-socket $SOCK http://x"; else a="http://127.0.0.1:$PORT"; fi
		curl -s -o "$TEST_DIR/c.$i" -w "%{http_code}\n" --max-time 120 \
			-d "{\"model\":\"mini\",\"prompt\":\"request $i\",\"max_tokens\":10,\"seed\":$i,\"stream\":$s}" \
			$a/v1/completions >"$TEST_DIR/code.$i" &
		pids="$pids $!"
		i=$((i + 1))
	done &&
	wait $pids &&
	i=0 &&
	while [ $i -lt 40 ]; do
		test "$(cat "$TEST_DIR/code.$i")" = 200 || { say "request $i: $(cat "$TEST_DIR/code.$i")"; return 1; }
		if [ $((i % 2)) = 0 ]; then $U sse "$TEST_DIR/c.$i" >/dev/null || return 1
		else $U get "$TEST_DIR/c.$i" usage.completion_tokens >/dev/null || return 1; fi
		i=$((i + 1))
	done &&
	curl -sf --unix-socket "$SOCK" http://x/health >/dev/null
'

test_expect_success "a client that disconnects mid-stream gives its turn back" '
	$U disconnect "unix:$SOCK" /v1/completions "{\"model\":\"slow\",\"prompt\":\"a\",\"max_tokens\":1000,\"stream\":true}" &&
	$U disconnect "127.0.0.1:$PORT" /v1/chat/completions "{\"model\":\"slow\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"max_tokens\":1000,\"stream\":true}" &&
	wait_for 60 "curl -s --unix-socket \"$SOCK\" http://x/health >\"$TEST_DIR/out\" && test \$(field cancelled_streams) = 2" &&
	post /v1/completions "{\"model\":\"slow\",\"prompt\":\"b\",\"max_tokens\":2}" &&
	test "$CODE" = 200 && test "$(field usage.completion_tokens)" = 2
'

test_expect_success "a full queue answers 503 queue_full, and the server goes on" '
	spawn_kill serve && rm -f "$TEST_DIR/serve.rc" &&
	start_server --model "$TEST_DIR/slow" --listen "unix:$SOCK" --max-queue 1 &&
	i=0 pids= &&
	# 200 tokens of "slow" keep the first request running for a second and more while the
	# other five, started at once, find the queue full; the test waits for the two answered.
	while [ $i -lt 6 ]; do
		curl -s -o "$TEST_DIR/q.$i" -w "%{http_code}\n" --max-time 120 --unix-socket "$SOCK" \
			-d "{\"prompt\":\"q\",\"max_tokens\":200}" http://x/v1/completions >"$TEST_DIR/qc.$i" &
		pids="$pids $!"
		i=$((i + 1))
	done &&
	wait $pids &&
	cat "$TEST_DIR"/qc.* | sort | uniq -c &&
	grep -l 503 "$TEST_DIR"/qc.* >/dev/null && grep -l 200 "$TEST_DIR"/qc.* >/dev/null &&
	for f in "$TEST_DIR"/qc.*; do
		n=${f##*.}
		if [ "$(cat "$f")" = 503 ]; then
			test "$($U get "$TEST_DIR/q.$n" error.code)" = queue_full || return 1
		fi
	done &&
	post /v1/completions "{\"prompt\":\"b\",\"max_tokens\":2}" && test "$CODE" = 200
'

test_expect_success "SIGTERM stops the server and removes its socket" '
	kill -TERM "$(cat "$TEST_DIR/serve.pid")" && spawn_wait serve 30 &&
	test "$EXIT_STATUS" = 0 && test ! -e "$SOCK"
'

test_expect_success "no sanitizer report in any server log (sanitised builds)" '
	ls "$TEST_DIR"/serve.*.log &&
	! grep -n "Sanitizer\|runtime error" "$TEST_DIR"/serve.*.log
'

test_done
