#!/usr/bin/env python3
"""The targets of issue 21 from one compare.sh run: the access log on
(`edge-log`) against nginx and against the log-off `edge`, pass-through
against nginx, miss + fill against ATS, each as the ratio of the medians and
as the ratio within every round (the box is noisy: a round runs every proxy
back to back, so a ratio within a round shares its background), then each
scenario's figure (req/s, MB/s for hit256k, offload % for zipf) per round.

    compare_targets_21.py OUT_DIR

Reads OUT_DIR/runs.jsonl (the harness's rows; round 0 is the warm-up and is
left out). A run the harness flagged noisy is marked with *.
"""
import json
import os
import statistics
import sys


def load(out):
    rows = []
    with open(os.path.join(out, "runs.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if row.get("round", 0) > 0:
                rows.append(row)
    return rows


def by_round(rows, scenario, target):
    """{round: row} of one scenario and proxy."""
    return {r["round"]: r for r in rows if r["scenario"] == scenario and r["target"] == target}


def median_rps(rows, scenario, target):
    values = [r["rps"] for r in by_round(rows, scenario, target).values()]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"


# (label, scenario, numerator, denominator, kind, goal): kind "ratio" is
# num / den and must be at least goal; kind "cost" is 1 - num / den and must
# be at most goal.
TARGETS = [
    ("hit 1 KiB, access log on: edge-log / nginx", "hit1k", "edge-log", "nginx", "ratio", 1.2),
    ("hit 1 KiB, log cost: 1 − edge-log / edge", "hit1k", "edge-log", "edge", "cost", 0.10),
    ("hit 1 KiB, access log off: edge / nginx", "hit1k", "edge", "nginx", "ratio", 1.2),
    ("passuniq: edge / nginx", "passuniq", "edge", "nginx", "ratio", 1.0),
    ("passuniq, access log on: edge-log / nginx", "passuniq", "edge-log", "nginx", "ratio", 1.0),
    ("missfill: edge / ats", "missfill", "edge", "ats", "ratio", 1.0),
    ("missfill, access log on: edge-log / ats", "missfill", "edge-log", "ats", "ratio", 1.0),
]


def value(kind, num, den):
    if num is None or not den:
        return None
    return num / den if kind == "ratio" else 1 - num / den


def show(kind, v):
    if v is None:
        return "n/a"
    return f"{v:.2f}×" if kind == "ratio" else f"{100 * v:.1f} %"


def met(kind, v, goal):
    if v is None:
        return "?"
    ok = v >= goal if kind == "ratio" else v <= goal
    return "yes" if ok else "NO"


def main():
    out = sys.argv[1]
    rows = load(out)
    present = {r["target"] for r in rows}
    lines = ["", "## Targets of issue 21 (ratio of the medians, and within each round)", "",
             "| target | edge side req/s | reference req/s | ratio | per round | goal | met |",
             "|---|---|---|---|---|---|---|"]
    for label, scen, num, den, kind, goal in TARGETS:
        if num not in present or den not in present:
            lines.append(f"| {label} | | | n/a ({den if den not in present else num} not run) | | | ? |")
            continue
        n_med, d_med = median_rps(rows, scen, num), median_rps(rows, scen, den)
        v = value(kind, n_med, d_med)
        n_rounds, d_rounds = by_round(rows, scen, num), by_round(rows, scen, den)
        per_round = []
        for rnd in sorted(set(n_rounds) & set(d_rounds)):
            a, b = n_rounds[rnd], d_rounds[rnd]
            mark = "*" if a.get("noisy") or b.get("noisy") else ""
            per_round.append(show(kind, value(kind, a["rps"], b["rps"])) + mark)
        goal_text = f"≥ {goal:.1f}×" if kind == "ratio" else f"≤ {100 * goal:.0f} %"
        lines.append(f"| {label} | {fmt(n_med)} | {fmt(d_med)} | {show(kind, v)} | {', '.join(per_round)} | "
                     f"{goal_text} | {met(kind, v, goal)} |")

    order = [t for t in ("edge", "edge-log", "nginx", "ats", "varnish", "static") if t in present]
    # (scenario, field, what, digits): the figure each scenario is judged by.
    per_round = [("hit1k", "rps", "req/s", 0), ("hit256k", "mbps", "MB/s", 1),
                 ("passuniq", "rps", "req/s", 0), ("missfill", "rps", "req/s", 0),
                 ("zipf", "offload_pct", "offload % (1 − origin / client requests)", 1)]
    for scen, field, what, digits in per_round:
        if not any(r["scenario"] == scen for r in rows):
            continue
        lines += ["", f"### {scen}: {what} per round", "",
                  "| round | " + " | ".join(order) + " |", "|---" * (len(order) + 1) + "|"]
        table = {t: by_round(rows, scen, t) for t in order}
        for rnd in sorted({k for t in order for k in table[t]}):
            cells = []
            for t in order:
                r = table[t].get(rnd)
                v = None if r is None else r.get(field)
                cells.append("" if v is None else fmt(v, digits) + ("*" if r.get("noisy") else ""))
            lines.append(f"| {rnd} | " + " | ".join(cells) + " |")
        medians = []
        for t in order:
            values = [r[field] for r in table[t].values() if r.get(field) is not None]
            medians.append(fmt(statistics.median(values), digits) if values else "")
        lines.append("| median | " + " | ".join(medians) + " |")
    lines += ["", "(* the harness flagged the run noisy: other load on the proxy's CPU.)"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
