#!/usr/bin/env python3
"""The targets of issue 9 from one compare.sh run: medians per scenario and
proxy from the harness's runs.jsonl, the burst counts and the idle RSS, as a
markdown table with each ratio and whether it is met.

    compare_targets.py OUT_DIR
"""
import glob
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
    # compare.sh runs the harness twice (Zipf on its own): one meta file
    # each, their memory snapshots merged.
    meta, mem = {}, {}
    for path in sorted(glob.glob(os.path.join(out, "meta-*.json"))):
        with open(path) as f:
            part = json.load(f)
        mem.update(part.get("mem", {}))
        meta.update(part)
    meta["mem"] = mem
    burst = []
    path = os.path.join(out, "burst.json")
    if os.path.exists(path):
        with open(path) as f:
            burst = json.load(f)
    return rows, meta, burst


def median(rows, scenario, target, field):
    values = [r[field] for r in rows
              if r["scenario"] == scenario and r["target"] == target and r.get(field) is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def main():
    out = sys.argv[1]
    rows, meta, burst = load(out)
    lines = ["", "## Targets (medians of this run)", "",
             "| target | edge | nginx | varnish | ratio | goal | met |", "|---|---|---|---|---|---|---|"]

    def ratio_row(label, scenario, field, goal, against="nginx", digits=0, lower_is_better=False):
        e = median(rows, scenario, "edge", field)
        n = median(rows, scenario, "nginx", field)
        v = median(rows, scenario, "varnish", field)
        ref = n if against == "nginx" else v
        if e is None or not ref:
            lines.append(f"| {label} | {fmt(e, digits)} | {fmt(n, digits)} | {fmt(v, digits)} | n/a | {goal} | ? |")
            return
        ratio = e / ref
        want = float(goal.split("×")[0].lstrip("≥≤ "))
        met = ratio <= want if lower_is_better else ratio >= want
        lines.append(f"| {label} | {fmt(e, digits)} | {fmt(n, digits)} | {fmt(v, digits)} | "
                     f"{ratio:.2f}× {against} | {goal} {against} | {'yes' if met else 'NO'} |")

    ratio_row("hit 1 KiB req/s", "hit1k", "rps", "≥1.2×")
    ratio_row("hit 1 KiB req/s", "hit1k", "rps", "≥1.5×", against="varnish")
    ratio_row("hit 1 KiB p99 ms", "hit1k", "p99_ms", "≤1.0×", digits=3, lower_is_better=True)
    ratio_row("hit 256 KiB MB/s", "hit256k", "mbps", "≥1.0×", digits=1)
    ratio_row("miss (unique cacheable URLs) req/s", "missfill", "rps", "≥0.9×")

    e = median(rows, "zipf", "edge", "offload_pct")
    n = median(rows, "zipf", "nginx", "offload_pct")
    v = median(rows, "zipf", "varnish", "offload_pct")
    if e is not None and n is not None:
        diff = e - n
        lines.append(f"| Zipf hit ratio (offload %) | {fmt(e, 1)} | {fmt(n, 1)} | {fmt(v, 1)} | "
                     f"{diff:+.1f} pp vs nginx | ≥ +5 pp | {'yes' if diff >= 5 else 'NO'} |")
        fair = os.path.join(out, "zipf-equal-bytes")
        if os.path.exists(os.path.join(fair, "runs.jsonl")):
            fair_rows, _, _ = load(fair)
            ef = median(fair_rows, "zipf", "edge", "offload_pct")
            peak = os.path.join(out, "nginx-cache-peak-mb.txt")
            if not os.path.exists(peak):
                peak = os.path.join(out, "nginx-cache-mb.txt")
            with open(peak) as f:
                nginx_mb = f.read().strip()
            if ef is not None:
                diff = ef - n
                lines.append(f"| Zipf hit ratio, edge at the most nginx's cache held ({nginx_mb} MiB) | {fmt(ef, 1)} | "
                             f"{fmt(n, 1)} | | {diff:+.1f} pp vs nginx | ≥ +5 pp | {'yes' if diff >= 5 else 'NO'} |")
        re, rn, rv = (median(rows, "zipf", t, "rps") for t in ("edge", "nginx", "varnish"))
        lines.append(f"| Zipf req/s | {fmt(re)} | {fmt(rn)} | {fmt(rv)} | "
                     f"{re / rn:.2f}× nginx | (reported) | |" if re and rn else "| Zipf req/s | n/a | | | | | |")

    nginx_cache = os.path.join(out, "nginx-cache-mb.txt")
    if os.path.exists(nginx_cache):
        with open(nginx_cache) as f:
            size = f.read().strip()
        budget = meta.get("cache_mb") or os.environ.get("CACHE_SIZE_MB", "?")
        if size:
            lines.append(f"| nginx cache on disk after the run (MB) | | {size} | | | "
                         f"budget {budget} | (reported) |")
        peak = os.path.join(out, "nginx-cache-peak-mb.txt")
        if os.path.exists(peak):
            with open(peak) as f:
                most = f.read().strip()
            if most:
                lines.append(f"| nginx cache on disk, most seen during the run (MB, sampled every 2 s) | | "
                             f"{most} | | | budget {budget} | (reported) |")

    fetches = {b["target"]: b["origin_fetches"] for b in burst}
    if fetches:
        lines.append(f"| cold burst, 1000 connections: origin fetches | {fetches.get('edge')} | "
                     f"{fetches.get('nginx')} | {fetches.get('varnish')} | | exactly 1 | "
                     f"{'yes' if fetches.get('edge') == 1 else 'NO'} |")

    mem = meta.get("mem", {})

    def rss_mb(target, point):
        value = mem.get(f"{target}|{point}")
        return value[0] / 1024 if value else None

    idle = {t: rss_mb(t, "start") for t in ("edge", "nginx", "varnish")}
    if idle["edge"] is not None:
        lines.append(f"| idle RSS MB | {fmt(idle['edge'], 1)} | {fmt(idle['nginx'], 1)} | {fmt(idle['varnish'], 1)} | "
                     f"| ≤ 25 MB | {'yes' if idle['edge'] <= 25 else 'NO'} |")
    last = None
    for key in mem:
        target, point = key.split("|", 1)
        if target == "edge" and point.startswith("after-"):
            last = point
    if last:
        after = {t: rss_mb(t, last) for t in ("edge", "nginx", "varnish")}
        lines.append(f"| RSS after load ({last}) MB | {fmt(after['edge'], 1)} | {fmt(after['nginx'], 1)} | "
                     f"{fmt(after['varnish'], 1)} | | (reported) | |")

    ceiling = median(rows, "hit1k", "static", "rps")
    edge_hit = median(rows, "hit1k", "edge", "rps")
    if ceiling and edge_hit:
        lines.append(f"| hit 1 KiB vs nginx serving files (ceiling) | {fmt(edge_hit)} | {fmt(ceiling)} (static) | | "
                     f"{edge_hit / ceiling:.2f}× static | (reported) | |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
