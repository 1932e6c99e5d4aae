#!/usr/bin/env python3
"""Bounds on what answers of cheap models can buy, on an outcome table
(docs/paths.md, "Outcome table"; it needs the answer column), against the
best single model: how far any answer-based cascade can go, whatever its
stopping rule, before a planner is tried.

  cheap        models under a fifth of the best model's mean cost;
  plurality    the most given answer of all cheap models (first on a tie)
               is right (right = an answer some right model gave);
  verifier     a PERFECT verifier: a subset S of the cheap models is
               called, their plurality stands when it is right, else the
               best model is called: the least cost (share of the best
               model's) over all S at which quality reaches the best's.
               No real stopping rule does better with those calls;
  margin       all cheap models called, then the best model on the
               prompts of smallest vote margin (the order known in
               hindsight): least cost at 95 / 99 / 100 % of the best's.
All prompts of the table; a bound, not a replay (llmfs-route-eval is).
Usage: cascade-bound.py TABLE.tsv
"""
import collections
import itertools
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    with open(sys.argv[1], encoding="utf-8") as f:
        head = f.readline().rstrip("\n").split("\t")
        col = {h: i for i, h in enumerate(head)}
        if "answer" not in col:
            sys.exit("cascade-bound.py: the table has no answer column")
        byp, models = collections.defaultdict(dict), []
        for line in f:
            r = line.rstrip("\n").split("\t")
            m = r[col["model"]]
            if m not in models:
                models.append(m)
            byp[r[col["prompt_id"]]][m] = (
                float(r[col["quality"]]) >= 0.5, float(r[col["cost_usd"]]),
                r[col["answer"]])
    ps = [p for p in byp if len(byp[p]) == len(models)]
    n = len(ps)
    cost = {m: sum(byp[p][m][1] for p in ps) / n for m in models}
    acc = {m: sum(byp[p][m][0] for p in ps) / n for m in models}
    best = max(models, key=lambda m: (acc[m], -cost[m]))
    qb, cb = acc[best], cost[best]
    cheap = [m for m in models if cost[m] < cb / 5]
    right = {p: {byp[p][m][2] for m in models if byp[p][m][0]} for p in ps}

    def plur(p, s):
        return collections.Counter(byp[p][m][2] for m in s).most_common(1)[0][0]

    print("%s: %d prompts; best %s %.4f; %d cheap models, all of them %.1f %% "
          "of its cost" % (sys.argv[1], n, best, qb, len(cheap),
                           100 * sum(cost[m] for m in cheap) / cb))
    if not cheap:
        return
    print("plurality of the cheap models: %.4f" %
          (sum(plur(p, cheap) in right[p] for p in ps) / n))
    top = None
    for k in range(1, len(cheap) + 1):
        for s in itertools.combinations(cheap, k):
            wrong = [p for p in ps if plur(p, s) not in right[p]]
            gain = sum(byp[p][best][0] for p in wrong) / n
            short = qb - (n - len(wrong)) / n
            if short > gain + 1e-12:
                continue
            # The best model on a share f of those prompts (a mix, as the
            # replay's hull mixes): just enough to reach its quality.
            f = max(0.0, short / gain) if gain > 0 else 0.0
            c = sum(cost[m] for m in s) / cb + f * len(wrong) / n
            if top is None or c < top[0]:
                top = (c, qb if f > 0 else (n - len(wrong)) / n, s)
    if top:
        print("perfect verifier: %.1f %% of the best's cost (quality %.4f; "
              "%s)" % (100 * top[0], top[1], ", ".join(top[2])))
    else:
        print("perfect verifier: the best's quality not reached")
    items = []
    for p in ps:
        v = collections.Counter(byp[p][m][2] for m in cheap).most_common(2)
        lead = v[0][1] - (v[1][1] if len(v) > 1 else 0)
        items.append((-lead, v[0][0] in right[p], byp[p][best][0]))
    items.sort(key=lambda x: x[0])
    base = sum(cost[m] for m in cheap) / cb
    curve, good, dear = [], 0, sum(x[2] for x in items)
    for f in range(n + 1):
        curve.append((base + (n - f) / n, (good + dear) / n))
        if f < n:
            good += items[f][1]
            dear -= items[f][2]
    for t in (0.95, 0.99, 1.0):
        ok = [c for c, q in curve if q >= t * qb]
        print("margin, all cheap called, %3.0f %%: %s" % (
            100 * t, "%.1f %%" % (100 * min(ok)) if ok else "not reached"))


if __name__ == "__main__":
    main()
