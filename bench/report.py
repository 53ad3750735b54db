#!/usr/bin/env python3
"""Summarises a bench/run: medians per scenario and tool, the ratios of
lkcache to each peer of the same run, and issue 7's targets; prints them as
a table, writes them as JSON, and compares with an earlier run's JSON.

usage: report.py --runs RUNS.jsonl --meta META.json [--json OUT] [--compare OLD]

RUNS.jsonl holds one record per run (bench/measure.py writes them); round 0
is the warm-up, kept in the JSON but left out of the medians.
"""

import argparse
import json
import statistics
import sys

# The scenarios in the order the table shows them, with what they measure.
SCENARIOS = {
    "cold-one": "cold pull, one platform of a 3-platform index",
    "cold-all": "cold pull, all three platforms",
    "cold-big": "cold pull, ~500 MB image in 5 layers",
    "warm": "warm pull, everything cached",
    "pull-unchanged": "--pull of an unchanged tag",
    "small20": "twenty small images in one command",
    "shared-base": "two images sharing a base layer, one command",
    "ls": "ls of a cache with 10,000 names",
    "export": "export --format filesystem of the amd64 image",
}
METRICS = ("wall_s", "cpu_s", "peak_rss_mib", "registry_cpu_s", "other_cpu_s", "disk_busy_s")
REQUEST_KINDS = ("manifest", "blob", "other", "total")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--json")
    parser.add_argument("--compare")
    return parser.parse_args()


def summarise(runs, meta):
    """Groups the runs into scenarios and tools, with medians and ratios."""
    scenarios = {}
    for run in runs:
        tools = scenarios.setdefault(run["scenario"], {})
        tools.setdefault(run["tool"], []).append(run)
    result = {}
    for name in sorted(scenarios, key=lambda s: list(SCENARIOS).index(s)):
        tools = {tool: tool_summary(tool_runs) for tool, tool_runs in scenarios[name].items()}
        result[name] = {
            "title": SCENARIOS[name],
            "plan": meta.get("plans", {}).get(name),
            "tools": tools,
            "ratios": ratios(tools),
        }
    return result


def tool_summary(runs):
    measured = [r for r in runs if r["round"] > 0] or runs
    summary = {m: round(statistics.median(r.get(m, 0) for r in measured), 4) for m in METRICS}
    summary["requests"] = {
        k: statistics.median(r["requests"][k] for r in measured) for k in REQUEST_KINDS
    }
    totals = {r["requests"]["total"] for r in measured}
    summary["requests_vary"] = len(totals) > 1
    walls = [r["wall_s"] for r in measured]
    summary["wall_spread"] = round((max(walls) - min(walls)) / summary["wall_s"], 3) if summary["wall_s"] else 0
    summary["rounds"] = len(measured)
    summary["runs"] = runs
    return summary


def ratios(tools):
    """lkcache's medians over each peer's, per metric."""
    ours = tools.get("lkcache")
    if not ours:
        return {}
    return {
        peer: {
            "wall": ratio(ours["wall_s"], theirs["wall_s"]),
            "cpu": ratio(ours["cpu_s"], theirs["cpu_s"]),
            "peak_rss": ratio(ours["peak_rss_mib"], theirs["peak_rss_mib"]),
        }
        for peer, theirs in tools.items()
        if peer != "lkcache"
    }


def ratio(a, b):
    return round(a / b, 3) if b else None


def targets(scenarios):
    """Issue 7's targets, each with the measured value and whether it is met."""
    found = []

    def add(scenario, what, value, is_met, shown):
        found.append({"scenario": scenario, "target": what, "value": value,
                      "shown": shown, "met": is_met})

    def wall_ratio(scenario, peer, limit, strict=False):
        value = scenarios.get(scenario, {}).get("ratios", {}).get(peer, {}).get("wall")
        if value is not None:
            is_met = value < limit if strict else value <= limit
            add(scenario, f"wall {'<' if strict else '≤'} {limit}× {peer}", value, is_met, f"{value:.2f}×")

    def requests(scenario, kind, expected):
        tool = scenarios.get(scenario, {}).get("tools", {}).get("lkcache")
        if tool:
            value = tool["requests"][kind]
            add(scenario, f"{kind} requests = {expected}", value, value == expected, f"{value:g}")

    for scenario in ("cold-one", "cold-all", "cold-big"):
        wall_ratio(scenario, "floor", 1.15)
        wall_ratio(scenario, "skopeo", 0.5)
    big = scenarios.get("cold-big", {}).get("tools", {}).get("lkcache")
    if big:
        rss = big["peak_rss_mib"]
        add("cold-big", "peak RSS ≤ 16 MiB", rss, rss <= 16, f"{rss:.1f} MiB")
    requests("warm", "total", 0)
    wall_ratio("warm", "skopeo", 0.15)
    requests("pull-unchanged", "manifest", 1)
    requests("pull-unchanged", "blob", 0)
    wall_ratio("small20", "floor", 1.15)
    shared = scenarios.get("shared-base", {})
    if shared.get("plan") and "lkcache" in shared.get("tools", {}):
        requests("shared-base", "blob", shared["plan"]["blobs"])
    ls = scenarios.get("ls", {}).get("tools", {}).get("lkcache")
    if ls:
        ms = ls["wall_s"] * 1000
        add("ls", "wall < 50 ms", round(ms, 1), ms < 50, f"{ms:.1f} ms")
    wall_ratio("export", "zcat", 1.3)
    wall_ratio("export", "umoci+tar", 1.0, strict=True)
    return found


def print_table(meta, scenarios, found):
    seconds = meta["seconds"]
    print()
    print(f"lkcache {meta['revision']} on {meta['cpus']} × {meta['cpu']}, {meta['kernel']}; "
          f"{meta['rounds']} rounds after a warm-up, medians; {meta['date']}")
    print(f"load average before {meta['load_average']['before']}, "
          f"after {meta['load_average']['after']}")
    print()
    print(f"{'scenario / tool':<22}{'wall s':>9}{'spread':>8}{'cpu s':>8}{'peak MiB':>10}"
          f"{'requests m/b/o':>16}{'reg. cpu':>9}{'others':>8}   lkcache ÷ tool: wall   cpu    rss")
    for name, scenario in scenarios.items():
        plan = scenario["plan"]
        size = f" ({plan['compressed_bytes'] / 1e6:.0f} MB)" if plan else ""
        print(f"{name}: {scenario['title']}{size}")
        for tool, s in scenario["tools"].items():
            r = s["requests"]
            requests = f"{r['manifest']:g}/{r['blob']:g}/{r['other']:g}" + ("*" if s["requests_vary"] else "")
            spread = f"±{s['wall_spread'] * 50:.0f}%"
            line = (f"  {tool:<20}{s['wall_s']:>9.3f}{spread:>8}{s['cpu_s']:>8.3f}{s['peak_rss_mib']:>10.1f}"
                    f"{requests:>16}{s['registry_cpu_s']:>9.2f}{s['other_cpu_s']:>8.2f}")
            ratio_of = scenario["ratios"].get(tool)
            if ratio_of:
                line += "   " + "  ".join(fmt_ratio(ratio_of[m]) for m in ("wall", "cpu", "peak_rss"))
            print(line)
    print()
    print("targets (issue 7):")
    for t in found:
        mark = "met " if t["met"] else "MISS"
        print(f"  {mark}  {t['scenario']:<15} {t['target']:<22} {t['shown']}")
    print()
    print(f"run took {seconds['total']:.0f} s: build {seconds['build']:.0f} s, generating images "
          f"{seconds['generation']:.0f} s, pushing {seconds['push']:.0f} s, measuring {seconds['measure']:.0f} s")
    print("spread: half the range of the rounds' wall times, over the median; requests m/b/o: "
          "manifest/blob/other requests in the registry's access log (* = not the same every "
          "round); reg. cpu: the registry's CPU seconds; others: CPU seconds of everything else "
          "on the machine meanwhile (kernel writeback, other users)")


def fmt_ratio(value):
    return f"{value:.2f}×" if value is not None else "  -  "


def print_comparison(old, scenarios):
    print()
    print(f"change from {old['meta'].get('revision')} ({old['meta'].get('date')}), median wall time:")
    for name, scenario in scenarios.items():
        before = old.get("scenarios", {}).get(name)
        if not before:
            continue
        for tool, s in scenario["tools"].items():
            prev = before["tools"].get(tool)
            if not prev:
                continue
            change = (s["wall_s"] / prev["wall_s"] - 1) * 100 if prev["wall_s"] else 0
            line = f"  {name:<15} {tool:<15} {prev['wall_s']:>8.3f} → {s['wall_s']:>8.3f} s  {change:+6.1f}%"
            now_ratio = scenario["ratios"].get(tool, {}).get("wall")
            old_ratio = before.get("ratios", {}).get(tool, {}).get("wall")
            if now_ratio is not None and old_ratio is not None:
                line += f"   lkcache ÷ {tool}: {old_ratio:.2f}× → {now_ratio:.2f}×"
            print(line)


def main():
    args = parse_args()
    with open(args.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    with open(args.meta) as f:
        meta = json.load(f)
    scenarios = summarise(runs, meta)
    found = targets(scenarios)
    print_table(meta, scenarios, found)
    if args.compare:
        with open(args.compare) as f:
            print_comparison(json.load(f), scenarios)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "scenarios": scenarios, "targets": found}, f, indent=1)
            f.write("\n")
        print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
