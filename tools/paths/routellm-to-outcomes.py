#!/usr/bin/env python3
"""Convert RouteLLM per-query outcomes (MMLU by subject, GSM8K) into the
llmfs outcome table (docs/paths.md, "Outcome table").

The RouteLLM files record only whether each model answered correctly, so
cost is derived from a price table and a token estimate:
  input tokens  = ceil(UTF-8 bytes of the prompt / 4)
  output tokens = ceil(UTF-8 bytes of the model's response / 4) where the
                  response is recorded (GSM8K); MMLU records none and its
                  prompts end in "Answer:", graded on one letter, so 1.
Prices are USD per million tokens (public list prices, see docs/paths.md)
and may be overridden with --price MODEL=IN/OUT.  Latency is not recorded
upstream and is written as "-" (unknown).  Prompts listed in
contaminated_prompts.jsonl as eval prompts are dropped.

--check gsm8k-arith adds a `check` column: whether check-gsm8k-arith.py
(the same checker a cascade can use in the daemon) accepts each model's
recorded response; it needs the responses, so GSM8K only.

--text-of MODEL writes MODEL's recorded response (GSM8K) as the `prompt`
column instead of the question: an experiment in what an answer says about
its own correctness (a scorer of the answer, as FrugalGPT's), since the
per-prompt router then learns from that text; the costs stay the
question's.

--length-buckets N appends "-lenK" to each task type, K being the prompt's
length quantile (0 .. N-1) within the benchmark: a feature known before any
model is called, which lets a type-conditioned planner route a benchmark
that has a single task type (GSM8K).
"""
import argparse
import csv
import glob
import importlib.util
import json
import math
import os
import sys

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
PRICES = {STRONG: (10.0, 30.0), WEAK: (0.6, 0.6)}


def tokens(text):
    return max(1, math.ceil(len(text.encode("utf-8")) / 4))


def esc(s):
    return (s.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))


def contaminated(path):
    out = set()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.add(json.loads(line)["eval_prompt"])
    return out


def bucketer(prompts, n):
    """Returns prompt -> quantile bucket of its length, 0 .. n-1."""
    lens = sorted(len(p) for p in prompts)
    cuts = [lens[len(lens) * k // n] for k in range(1, n)]
    return lambda p: sum(len(p) > c for c in cuts)


def load_checker(name):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        f"check-{name}.py")
    spec = importlib.util.spec_from_file_location("checker", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.passes


def emit(w, pid, ttype, row, prices, a, check, split):
    prompt = row["prompt"]
    for model, (pin, pout) in prices.items():
        if model not in row:
            continue
        val = row[model]
        # MMLU and GSM8K record True/False; MT-Bench a judge's score.
        q = (1 if val.strip() == "True" else 0) if isinstance(val, str) \
            else val
        resp = row.get(model + "_response")
        out_tok = tokens(resp) if resp else 1
        cost = (tokens(prompt) * pin + out_tok * pout) / 1e6
        ans = esc(resp) if (resp and a.answers) else "-"
        chk = "-"
        if check:
            if resp is None:
                sys.exit(f"--check needs recorded responses ({model})")
            chk = "1" if check(resp) else "0"
        text = row[a.text_of + "_response"] if a.text_of else prompt
        extra = "" if a.no_prompts else f"\t{esc(text)}"
        if split:
            extra += f"\t{split}"
        w.write(f"{pid}\t{ttype}\t{model}\t{q:g}\t"
                f"{cost:.8f}\t-\t{chk}\t{ans}{extra}\n")


def mt_bench_answer(judge_prompt, multi):
    """The judged answer inside a GPT-4 judge prompt."""
    if multi:
        head, tail = "### Assistant A:\n", "\n\n<|The End of Assistant A's"
    else:
        head, tail = ("[The Start of Assistant's Answer]\n",
                      "\n[The End of Assistant's Answer]")
    i = judge_prompt.rfind(head)
    j = judge_prompt.find(tail, i)
    return judge_prompt[i + len(head):j] if i >= 0 and j > i else None


def mt_bench_rows(bench):
    """One row per question x turn: the turns so far as the prompt, each
    model's answer and GPT-4's score / 10 as the quality."""
    qs = {}
    with open(os.path.join(bench, "question.jsonl"), encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            qs[q["question_id"]] = q
    rows = {}
    with open(os.path.join(bench, "judgements.jsonl"), encoding="utf-8") as f:
        for line in f:
            j = json.loads(line)
            q = qs[j["question_id"]]
            key = (j["question_id"], j["turn"])
            row = rows.setdefault(key, {
                "prompt": "\n\n".join(q["turns"][:j["turn"]]),
                "category": q["category"]})
            row[j["model"]] = max(0.0, min(1.0, j["score"] / 10))
            ans = mt_bench_answer(j["user_prompt"], "multi-turn" in j["judge"][1])
            if ans is not None:
                row[j["model"] + "_response"] = ans
    return [(f"mt-bench/{qid}/{turn}", r["category"], r)
            for (qid, turn), r in sorted(rows.items())]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True,
                    help="the routellm folder (holds mmlu/ and gsm8k/)")
    ap.add_argument("--benchmark", choices=["mmlu", "gsm8k", "mt-bench"],
                    required=True)
    ap.add_argument("--price", action="append", default=[],
                    help="MODEL=IN/OUT, USD per million tokens")
    ap.add_argument("--check", choices=["gsm8k-arith"],
                    help="record a checker's verdict on each response")
    ap.add_argument("--length-buckets", type=int, default=1,
                    help="split task types by prompt length quantile")
    ap.add_argument("--answers", action="store_true",
                    help="include the recorded answer text where known")
    ap.add_argument("--no-prompts", action="store_true",
                    help="leave out the prompt column")
    ap.add_argument("--text-of", metavar="MODEL",
                    help="MODEL's response as the prompt text (GSM8K)")
    ap.add_argument("--one-type", metavar="NAME",
                    help="one task type for every prompt")
    ap.add_argument("--held-out-subjects", type=int, metavar="K",
                    help="a split column: every K-th subject or category "
                    "(sorted by name) is the test split, the rest train")
    a = ap.parse_args()
    prices = dict(PRICES)
    for p in a.price:
        m, v = p.rsplit("=", 1)
        i, o = v.split("/")
        prices[m] = (float(i), float(o))
    csv.field_size_limit(1 << 30)
    w = sys.stdout
    w.write("prompt_id\ttask_type\tmodel\tquality\tcost_usd\tlatency_s"
            "\tcheck\tanswer" + ("" if a.no_prompts else "\tprompt") +
            ("\tsplit" if a.held_out_subjects else "") + "\n")
    bench = os.path.join(a.data, a.benchmark.replace("-", "_"))
    skip = contaminated(os.path.join(bench, "contaminated_prompts.jsonl"))
    rows = []  # (prompt id, task type, row)
    if a.benchmark == "mmlu":
        files = sorted(glob.glob(os.path.join(bench, "responses",
                                              "mmlu_*.csv")))
        if not files:
            sys.exit(f"no mmlu_*.csv under {bench}/responses")
        for fn in files:
            subject = os.path.basename(fn)[len("mmlu_"):-len(".csv")]
            with open(fn, encoding="utf-8", newline="") as f:
                for i, row in enumerate(csv.DictReader(f)):
                    rows.append((f"mmlu/{subject}/{i}", subject, row))
    elif a.benchmark == "mt-bench":
        rows = mt_bench_rows(bench)
    else:
        fn = os.path.join(bench, "gsm8k_responses.csv")
        with open(fn, encoding="utf-8", newline="") as f:
            for i, row in enumerate(csv.DictReader(f)):
                rows.append((f"gsm8k/{i}", "gsm8k", row))
    rows = [r for r in rows if r[2]["prompt"] not in skip]
    if a.length_buckets > 1:
        b = bucketer([r[2]["prompt"] for r in rows], a.length_buckets)
        rows = [(pid, f"{t}-len{b(row['prompt'])}", row)
                for pid, t, row in rows]
    if a.text_of and any(a.text_of + "_response" not in r[2] for r in rows):
        sys.exit(f"--text-of: no recorded responses of {a.text_of}")
    check = load_checker(a.check) if a.check else None
    test_types = set()
    if a.held_out_subjects:
        names = sorted({t for _, t, _ in rows})
        test_types = set(names[::a.held_out_subjects])
    for pid, ttype, row in rows:
        split = None
        if a.held_out_subjects:
            split = "test" if ttype in test_types else "train"
        if a.one_type:
            ttype = a.one_type
        emit(w, pid, ttype, row, prices, a, check, split)


if __name__ == "__main__":
    main()
