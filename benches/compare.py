#!/usr/bin/env python3
"""Side-by-side Markdown comparison of Shoal against hnswlib and faiss.

Usage: python benches/compare.py RESULT_DIR

Reads every *.json in RESULT_DIR (written by Shoal's benchmark tool or by
benches/peers/run_peer.py, same schema), prints one table per (algo, metric)
and then checks Shoal's performance targets. Missing engines or runs show as
"—" / "n/a" instead of failing, so partial result sets can still be read.

A result may come from several builds of the index (--builds N): its recall
is then the mean over builds, shown with the min–max range of the builds,
and its QPS and build seconds are medians over builds. Targets are judged on
those means and medians. Results written before --builds existed count as
one build.
"""

import argparse
import json
import operator
import sys
from pathlib import Path

ENGINES = ("shoal", "hnswlib", "faiss")
ALGOS = ("hnsw", "flat")
METRICS = ("l2", "ip", "cosine")
# Settings that must agree for a comparison to be meaningful.
SETTINGS = ("n", "dim", "k", "num_queries", "build_threads", "search_threads", "builds")
HNSW_SETTINGS = SETTINGS + ("m", "ef_construction")
# Values of settings absent from older result files.
SETTING_DEFAULTS = {"builds": 1}
# Targets for Shoal relative to the peers.
RECALL_SLACK = 0.005
HNSW_QPS_FACTOR = 1.2
BYTES_FACTOR = 1.1
FLAT_BATCH_FACTOR = 0.8


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result_dir", type=Path)
    return parser.parse_args()


def load_results(result_dir):
    """Map (engine, algo, metric) -> result; unreadable files are reported and skipped."""
    results = {}
    for path in sorted(result_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            key = (data["engine"], data["algo"], data["metric"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"warning: skipping {path}: {err!r}", file=sys.stderr)
            continue
        if key in results:
            print(f"warning: {path} replaces an earlier result for {key}", file=sys.stderr)
        results[key] = data
    return results


def fmt(value, spec):
    """Format a number, or a dash when it is missing."""
    return "—" if value is None else format(value, spec)


def setting(result, key):
    """result[key], defaulting for settings older files lack; None when absent."""
    return result.get(key, SETTING_DEFAULTS.get(key))


def fmt_recall(run):
    """Mean recall of a run, plus the min–max over builds when there were several,
    e.g. `0.9591 (0.956–0.962)`; a dash when the run is missing."""
    mean = run.get("recall")
    if mean is None:
        return "—"
    every = run.get("recall_all") or []
    if len(every) < 2:
        return f"{mean:.4f}"
    return f"{mean:.4f} ({min(every):.3f}–{max(every):.3f})"


def builds_heading(group):
    """Number of builds behind a group's results, for its heading: `3 builds`,
    or per engine when they differ."""
    counts = {engine: setting(result, "builds") for engine, result in group.items()}
    if len(set(counts.values())) == 1:
        count = next(iter(counts.values()))
        return f"{count} build" + ("s" if count != 1 else "")
    return "builds " + ", ".join(f"{engine}={count}" for engine, count in counts.items())


def ratio(a, b):
    """a / b, or None when either side is missing or b is zero."""
    return a / b if a is not None and b else None


def runs_by_ef(result):
    """Map ef -> run for one result (empty when the result is missing)."""
    return {run.get("ef"): run for run in result.get("runs", [])} if result else {}


def run_value(runs, ef, key):
    """runs[ef][key], or None when that run is missing."""
    return runs.get(ef, {}).get(key)


def flat_run(result):
    """The single run of a FLAT result (empty when missing)."""
    return (result.get("runs") or [{}])[0]


def markdown_table(header, rows):
    """Render a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def settings_warning(algo, group):
    """Describe settings that differ between engines of one (algo, metric) group."""
    diffs = []
    for key in HNSW_SETTINGS if algo == "hnsw" else SETTINGS:
        values = {engine: setting(r, key) for engine, r in group.items()
                  if setting(r, key) is not None}
        if len(set(values.values())) > 1:
            diffs.append(f"{key} " + ", ".join(f"{e}={v}" for e, v in values.items()))
    return "**Settings differ:** " + "; ".join(diffs) if diffs else None


def hnsw_tables(group):
    """Per-ef recall/QPS table plus build time and memory table."""
    shoal, hnswlib, faiss = (runs_by_ef(group.get(e)) for e in ENGINES)
    efs = sorted({ef for runs in (shoal, hnswlib, faiss) for ef in runs if ef is not None})
    rows = []
    for ef in efs:
        s_rec, s_qps = run_value(shoal, ef, "recall"), run_value(shoal, ef, "qps")
        h_rec, h_qps = run_value(hnswlib, ef, "recall"), run_value(hnswlib, ef, "qps")
        delta = s_rec - h_rec if s_rec is not None and h_rec is not None else None
        rows.append([str(ef), fmt_recall(shoal.get(ef, {})), fmt(s_qps, ".0f"),
                     fmt_recall(hnswlib.get(ef, {})), fmt(h_qps, ".0f"),
                     fmt_recall(faiss.get(ef, {})),
                     fmt(run_value(faiss, ef, "qps"), ".0f"),
                     fmt(ratio(s_qps, h_qps), ".2f"), fmt(delta, "+.4f")])
    search = markdown_table(
        ["ef", "shoal recall", "shoal QPS", "hnswlib recall", "hnswlib QPS",
         "faiss recall", "faiss QPS", "QPS shoal/hnswlib", "recall Δ shoal−hnswlib"], rows)
    return search + "\n\n" + cost_table(group, "hnswlib")


def cost_table(group, reference):
    """Build seconds and bytes/vector for all engines, with Shoal/reference ratios."""
    rows = []
    for key, label, spec in (("build_seconds", "build seconds", ".2f"),
                             ("bytes_per_vector", "bytes/vector", ".1f")):
        values = [group.get(e, {}).get(key) for e in ENGINES]
        ref = group.get(reference, {}).get(key)
        rows.append([label] + [fmt(v, spec) for v in values]
                    + [fmt(ratio(values[0], ref), ".2f")])
    return markdown_table(["", *ENGINES, f"shoal/{reference}"], rows)


def flat_table(group):
    """Recall, one-at-a-time QPS and batched QPS, Shoal vs faiss."""
    shoal, faiss = group.get("shoal", {}), group.get("faiss", {})
    s_run, f_run = flat_run(shoal), flat_run(faiss)
    rows = [["recall", fmt_recall(s_run), fmt_recall(f_run), "—"]]
    for label, s_val, f_val in (
            ("single-query QPS", s_run.get("qps"), f_run.get("qps")),
            (f"batch QPS (threads {shoal.get('batch_threads', '—')}"
             f" / {faiss.get('batch_threads', '—')})",
             shoal.get("batch_qps"), faiss.get("batch_qps"))):
        rows.append([label, fmt(s_val, ".0f"), fmt(f_val, ".0f"), fmt(ratio(s_val, f_val), ".2f")])
    return markdown_table(["", "shoal", "faiss", "shoal/faiss"], rows)


def check(label, value, bound, holds):
    """One target line: met / NOT met / n/a when a side is missing."""
    if value is None or bound is None:
        return f"- n/a — {label}: missing data"
    status = "met" if holds(value, bound) else "NOT met"
    spec = ".4f" if abs(bound) < 10 else ".1f"
    return f"- {status} — {label}: {value:{spec}} vs required {bound:{spec}}"


def hnsw_targets(metric, group):
    """Shoal HNSW vs hnswlib: recall and QPS per ef, build time, memory."""
    shoal, hnswlib = runs_by_ef(group.get("shoal")), runs_by_ef(group.get("hnswlib"))
    lines = []
    for ef in sorted(ef for ef in set(shoal) | set(hnswlib) if ef is not None):
        h_rec, h_qps = run_value(hnswlib, ef, "recall"), run_value(hnswlib, ef, "qps")
        lines.append(check(f"hnsw {metric} ef={ef} recall >= hnswlib − {RECALL_SLACK}",
                           run_value(shoal, ef, "recall"),
                           None if h_rec is None else h_rec - RECALL_SLACK,
                           operator.ge))
        lines.append(check(f"hnsw {metric} ef={ef} QPS >= {HNSW_QPS_FACTOR}× hnswlib",
                           run_value(shoal, ef, "qps"),
                           None if h_qps is None else h_qps * HNSW_QPS_FACTOR,
                           operator.ge))
    s, h = group.get("shoal", {}), group.get("hnswlib", {})
    lines.append(check(f"hnsw {metric} build seconds <= hnswlib", s.get("build_seconds"),
                       h.get("build_seconds"), operator.le))
    h_bytes = h.get("bytes_per_vector")
    lines.append(check(f"hnsw {metric} bytes/vector <= {BYTES_FACTOR}× hnswlib",
                       s.get("bytes_per_vector"),
                       None if h_bytes is None else h_bytes * BYTES_FACTOR,
                       operator.le))
    return lines


def flat_targets(metric, group):
    """Shoal FLAT vs faiss: single-query QPS and batched QPS."""
    s, f = group.get("shoal", {}), group.get("faiss", {})
    f_batch = f.get("batch_qps")
    return [
        check(f"flat {metric} single-query QPS >= faiss",
              flat_run(s).get("qps"), flat_run(f).get("qps"),
              operator.ge),
        check(f"flat {metric} batch QPS >= {FLAT_BATCH_FACTOR}× faiss", s.get("batch_qps"),
              None if f_batch is None else f_batch * FLAT_BATCH_FACTOR, operator.ge),
    ]


def engine_order(item):
    """Sort key for ((engine, algo, metric), result): ENGINES order, unknown engines last."""
    engine = item[0][0]
    return (ENGINES.index(engine) if engine in ENGINES else len(ENGINES), engine)


def report_order(item):
    """Sort key for ((algo, metric), group): HNSW before FLAT, metrics l2, ip, cosine."""
    (algo, metric), _ = item
    return (ALGOS.index(algo) if algo in ALGOS else len(ALGOS), algo,
            METRICS.index(metric) if metric in METRICS else len(METRICS), metric)


def main():
    args = parse_args()
    if not args.result_dir.is_dir():
        sys.exit(f"{args.result_dir}: not a directory")
    results = load_results(args.result_dir)
    if not results:
        sys.exit(f"{args.result_dir}: no result files")
    groups = {}
    # Engines in ENGINES order within each group, so headings and warnings list
    # them as the tables do.
    for (engine, algo, metric), data in sorted(results.items(), key=engine_order):
        groups.setdefault((algo, metric), {})[engine] = data

    targets = []
    for (algo, metric), group in sorted(groups.items(), key=report_order):
        print(f"## {algo.upper()} {metric} ({builds_heading(group)})\n")
        warning = settings_warning(algo, group)
        if warning:
            print(warning + "\n")
        print((hnsw_tables(group) if algo == "hnsw" else flat_table(group)) + "\n")
        if "shoal" not in group:
            targets.append(f"- n/a — {algo} {metric}: no shoal result")
        elif algo == "hnsw":
            targets += hnsw_targets(metric, group)
        else:
            targets += flat_targets(metric, group)

    print("## Targets\n")
    print("Judged on the mean recall and the median QPS over each result's builds "
          "(build seconds: median over builds; bytes/vector: first build).\n")
    print("\n".join(targets))


if __name__ == "__main__":
    main()
