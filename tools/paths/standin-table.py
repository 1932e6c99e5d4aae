#!/usr/bin/env python3
"""Write a STAND-IN outcome table of 11 models (docs/paths.md, "Outcome
table"): made-up outcomes shaped like a RouterBench-style benchmark
(7B open models to GPT-4, one task type), for trying llmfs-route-eval
where the real held-out tables are not at hand.  Nothing here is a
measurement of a real model; the model names and list prices only set
the price spread.

The generative model, one draw per seed:
  prompt i   latent difficulty d_i ~ N(0, 1), topic t_i of --topics;
  model m    skill s_m rising with log price from --level at the
             cheapest by 2.2 at the dearest (plus N(0, 0.25) noise),
             an affinity per topic N(0, --topic-spread);
  P(m right on i) = sigmoid(--scale * (s_m - d_i) + aff[m][t_i] + e_im),
             the noise e_im = sqrt(rho) z_i + sqrt(1 - rho) u_im, so
             --corr rho makes errors correlated beyond difficulty;
  answers    --kind mc: letters A-D; a wrong answer is, with a
             probability that is larger for weaker models
             (--shared-wrong at the weakest), the prompt's one
             attractive distractor, else any other letter;
             pronoun: two options (a wrong answer is the other one);
             code: free text; right answers are one of a few equivalent
             spellings, wrong ones a shared bug or the model's own;
  prompt     words of the prompt's topic, a share of "hard" words that
             rises with d_i (--text-signal scales it; 0: no relation),
             common filler, and a length that grows with d_i;
  cost       list price x tokens (input bytes / 4; output per kind and
             model verbosity).
With --sentences (mc, pronoun) each answer is written in one of a few
sentences ("The answer is (B).", "I would say 2, since it fits best."),
each model with habits of its own, from a stream of its own: the
outcomes are those of the table without it, and whole answers rarely
agree where the choices do (llmfs-route-eval --key compares choices).
With --accuracies A1,...,A11 (one per model, in the order of MODELS)
each model's skill is set instead (by bisection) so that its expected
accuracy over prompts is the one given: price then sets only the cost.
The default line (skill rising with log price by 2.2 logits) makes every
model under $1 per million tokens weak and the $8+ models nearly as good
as GPT-4; on published benchmarks neither holds (docs/paths.md, "Stand-in
11-model tables": how much that matters).
Usage: standin-table.py [--seed N] [--prompts N] [--kind mc|pronoun|code]
       [--corr RHO] [--shared-wrong P] [--text-signal S]
       [--accuracies LIST] [--split] [--sentences] > t.tsv
"""
import argparse
import math
import random
import sys

# name, USD per million input / output tokens (public list prices, as
# RouterBench priced them), base skill before noise.
MODELS = [
    ("mistral-7b-chat", 0.2, 0.2),
    ("wizardlm-13b", 0.3, 0.3),
    ("mixtral-8x7b-chat", 0.6, 0.6),
    ("code-llama-34b", 0.776, 0.776),
    ("yi-34b-chat", 0.8, 0.8),
    ("claude-instant-v1", 0.8, 2.4),
    ("llama-2-70b-chat", 0.9, 0.9),
    ("gpt-3.5-turbo", 1.0, 2.0),
    ("claude-v1", 8.0, 24.0),
    ("claude-v2", 8.0, 24.0),
    ("gpt-4", 10.0, 30.0),
]


# How a model may put its choice X (a letter or an option number).
SENTENCES = ("{X}", "The answer is ({X}).", "Answer: {X}",
             "I would say {X}, since it fits best.", "{X}) is right.")


def sentence(rng, habit, x):
    """x in one of SENTENCES, drawn by the model's habit weights."""
    return rng.choices(SENTENCES, weights=habit)[0].replace("{X}", x)


def syllable_words(rng, n, syl=("ka", "lo", "mi", "ne", "ru", "ta", "vo",
                                "shi", "pra", "den", "gul", "ost")):
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice(syl) for _ in range(rng.randint(2, 4))))
    return sorted(out)


def esc(s):
    return (s.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def expected_accuracy(a, s, aff_m):
    """E[sigmoid(scale (s - d) + aff + e)] over d ~ N(0, 1), a uniform
    topic and e ~ N(0, 1), by a fixed quadrature (no draw: the fit must
    not move the seeded stream)."""
    nodes = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
    w = [math.exp(-x * x / 2) for x in nodes]
    tot = 0.0
    for di, wd in zip(nodes, w):
        for ei, we in zip(nodes, w):
            for af in aff_m:
                tot += wd * we * sigmoid(a.scale * (s - di) + af + ei)
    return tot / (sum(w) ** 2 * len(aff_m))


def fit_skills(a, aff):
    try:
        acc = [float(x) for x in a.accuracies.split(",")]
    except ValueError:
        sys.exit("standin-table.py: --accuracies: numbers, comma-separated")
    if len(acc) != len(MODELS) or not all(0 < x < 1 for x in acc):
        sys.exit("standin-table.py: --accuracies: %d numbers in (0, 1)"
                 % len(MODELS))
    out = []
    for m, target in enumerate(acc):
        lo, hi = -10.0, 10.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if expected_accuracy(a, mid, aff[m]) < target:
                lo = mid
            else:
                hi = mid
        out.append((lo + hi) / 2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=1200)
    ap.add_argument("--kind", choices=("mc", "pronoun", "code"), default="mc")
    ap.add_argument("--corr", type=float, default=0.3)
    ap.add_argument("--shared-wrong", type=float, default=0.6)
    ap.add_argument("--text-signal", type=float, default=1.0)
    ap.add_argument("--topics", type=int, default=8)
    ap.add_argument("--topic-spread", type=float, default=0.5)
    ap.add_argument("--scale", type=float, default=1.7)
    ap.add_argument("--level", type=float, default=None,
                    help="skill of the cheapest model (default by kind: "
                    "mc 0.2, pronoun -0.3, code -0.9)")
    ap.add_argument("--accuracies", default=None,
                    help="11 comma-separated expected accuracies in (0, 1), "
                    "one per model in price order; skills are fitted to them")
    ap.add_argument("--split", action="store_true",
                    help="write a split column (half train, half test)")
    ap.add_argument("--sentences", action="store_true",
                    help="mc and pronoun: write each answer in one of a "
                    "few sentences, by each model's habits (its choice "
                    "stays the same; compare with llmfs-route-eval --key)")
    a = ap.parse_args()
    if not 0 <= a.corr < 1 or not 0 <= a.shared_wrong <= 1:
        sys.exit("standin-table.py: --corr in [0, 1), --shared-wrong in [0, 1]")
    rng = random.Random(a.seed)

    # Skill rises with the price (log of the mean list price), noisy.
    lp = [math.log((pi + po) / 2) for _, pi, po in MODELS]
    lo, hi = min(lp), max(lp)
    level = a.level if a.level is not None else {
        "mc": 0.2, "pronoun": -0.3, "code": -0.9}[a.kind]
    skill = [level + 2.2 * (x - lo) / (hi - lo) + rng.gauss(0, 0.25)
             for x in lp]
    aff = [[rng.gauss(0, a.topic_spread) for _ in range(a.topics)]
           for _ in MODELS]
    if a.accuracies is not None:
        skill = fit_skills(a, aff)
    verb = [rng.uniform(0.7, 1.5) for _ in MODELS]
    # Sentences draw from a stream of their own: the outcomes stay those
    # of the table without them.
    srng = random.Random(a.seed * 7919 + 1)
    habit = [[srng.random() for _ in SENTENCES] for _ in MODELS]
    weak = [1 - (s - min(skill)) / (max(skill) - min(skill)) for s in skill]

    topic_words = [syllable_words(random.Random(a.seed * 100 + t), 40)
                   for t in range(a.topics)]
    hard = syllable_words(random.Random(a.seed * 100 + 99), 60,
                          ("zor", "quax", "ilth", "orn", "yss", "eph"))
    common = ("the which of a to in is that for what when how with and by "
              "from as on why an be most following are this").split()

    w = sys.stdout
    cols = ["prompt_id", "task_type", "model", "quality", "cost_usd",
            "latency_s", "answer", "prompt"] + (["split"] if a.split else [])
    w.write("\t".join(cols) + "\n")
    for i in range(a.prompts):
        d = rng.gauss(0, 1)
        t = rng.randrange(a.topics)
        z = rng.gauss(0, 1)
        n_words = max(8, int(rng.gauss(30 + 8 * d, 6)))
        p_hard = sigmoid(a.text_signal * 1.5 * d - 2.0) if a.text_signal else 0.12
        words = []
        for _ in range(n_words):
            u = rng.random()
            if u < p_hard:
                words.append(rng.choice(hard))
            elif u < p_hard + 0.45:
                words.append(rng.choice(topic_words[t]))
            else:
                words.append(rng.choice(common))
        prompt = " ".join(words) + "?"
        if a.kind == "mc":
            prompt += "\nA) ... B) ... C) ... D) ...\nAnswer:"
        in_tok = math.ceil(len(prompt.encode()) / 4)
        key = rng.choice("ABCD") if a.kind == "mc" else rng.choice("12")
        distractor = rng.choice([c for c in "ABCD" if c != key])
        bug = "def f(x): return x  # bug %d" % rng.randrange(3)
        split = "train" if rng.random() < 0.5 else "test"
        for m, (name, pin, pout) in enumerate(MODELS):
            e = math.sqrt(a.corr) * z + math.sqrt(1 - a.corr) * rng.gauss(0, 1)
            ok = rng.random() < sigmoid(a.scale * (skill[m] - d) + aff[m][t] + e)
            if a.kind == "mc":
                out_tok = max(1, int(verb[m] * 3))
                if ok:
                    ans = key
                elif rng.random() < a.shared_wrong * weak[m]:
                    ans = distractor
                else:
                    ans = rng.choice([c for c in "ABCD" if c != key])
            elif a.kind == "pronoun":
                out_tok = max(1, int(verb[m] * 2))
                ans = key if ok else ("1" if key == "2" else "2")
            else:
                out_tok = int(verb[m] * rng.uniform(60, 200))
                if ok:
                    ans = "def f(x): return x + 1  # spelling %d" % min(
                        2, int(rng.expovariate(1.5)))
                elif rng.random() < a.shared_wrong * weak[m]:
                    ans = bug
                else:
                    ans = "def f(x): pass  # %s %d" % (name, rng.randrange(10**6))
            if a.sentences and a.kind != "code":
                ans = sentence(srng, habit[m], ans)
            cost = (in_tok * pin + out_tok * pout) / 1e6
            row = ["q%d" % i, a.kind, name, "1" if ok else "0",
                   "%.8f" % cost, "-", esc(ans),
                   esc(prompt) if m == 0 else "-"]
            if a.split:
                row.append(split)
            w.write("\t".join(row) + "\n")


if __name__ == "__main__":
    main()
