"""Leak detection on the labelled trace corpus: tfops' detector and two baselines,
in the same run, over the same traces.

- fixed threshold: restart once the working set passes 90% of the limit, checked
  every 60 s (what zapier/preoomkiller-controller does);
- least squares: restart when predict_linear(working_set[30m], 1h) > limit has
  held for 5 minutes (the usual Prometheus alert, acted on).

Reported per detector: recall (leaks restarted before the OOM kill), leaks acted
on before 90% of the limit, restarts of healthy pods, lead time before the OOM,
and CPU per sample; once with every family at its own sampling interval, then with
every family sampled every 10, 15, 30 and 60 s. A leak that jumps from below 80% of
its limit to the OOM between two samples cannot be caught by any detector: those
are counted apart, not in recall. Results: bench/results/memory_guard.{json,md}.

Usage: python -m bench.memory_guard [--per-family 12] [--seed 7] [--intervals 10,15,30,60]
       [--write-corpus DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.proc import high_water_kb
from tfops.memory.detector import Sample
from tfops.memory.replay import replay, write_trace
from tfops.testing.traces import Trace, corpus

REPO = Path(__file__).resolve().parents[1]

RESULTS = REPO / "bench" / "results"
# A detector: samples in, the time of its first restart (or None) out.
Detector = Callable[[list[Sample]], float | None]


def tfops_detector(samples: list[Sample]) -> float | None:
    return next((step.verdict.seconds for step in replay(samples) if step.restart), None)


def fixed_threshold(
    samples: list[Sample], fraction: float = 0.9, every: float = 60.0
) -> float | None:
    next_check = 0.0
    for sample in samples:
        if sample.seconds < next_check:
            continue
        next_check = sample.seconds + every
        if sample.working_set >= fraction * sample.limit:
            return sample.seconds
    return None


def least_squares(
    samples: list[Sample],
    window: float = 1800.0,
    horizon: float = 3600.0,
    hold: float = 300.0,
    level: float = 0.7,
    warmup: float = 300.0,
) -> float | None:
    """The usual alert with its usual guards: a level check, a `for:` clause, and
    the same warm-up exclusion tfops gets."""
    firing_since = None
    start = 0
    for index, sample in enumerate(samples):
        if sample.seconds < warmup:
            start = index + 1
            continue
        while samples[start].seconds < sample.seconds - window:
            start += 1
        points = samples[start : index + 1]
        if len(points) < 3:
            continue
        n = len(points)
        mean_t = sum(p.seconds for p in points) / n
        mean_y = sum(p.working_set for p in points) / n
        var = sum((p.seconds - mean_t) ** 2 for p in points)
        slope = sum((p.seconds - mean_t) * (p.working_set - mean_y) for p in points) / var
        predicted = mean_y + slope * (sample.seconds + horizon - mean_t)
        if predicted > sample.limit and sample.working_set > level * sample.limit:
            firing_since = sample.seconds if firing_since is None else firing_since
            if sample.seconds - firing_since >= hold:
                return sample.seconds
        else:
            firing_since = None
    return None


DETECTORS: dict[str, Detector] = {
    "tfops (envelope Theil-Sen + Mann-Kendall)": tfops_detector,
    "fixed threshold 90%": fixed_threshold,
    "least squares (predict_linear 30m -> 1h, >70%, for 5m)": least_squares,
}


def evaluate(name: str, detector: Detector, traces: list[Trace]) -> dict[str, Any]:
    skipped = [t.name for t in traces if not t.catchable]
    traces = [t for t in traces if t.catchable]
    leaks = [t for t in traces if t.leak]
    healthy = [t for t in traces if not t.leak]
    caught, before_90, leads, missed, false_restarts = 0, 0, [], [], []
    per_family: dict[str, dict[str, int]] = {}
    started = time.process_time()
    samples_seen = 0
    for trace in traces:
        restart = detector(trace.samples)
        samples_seen += sum(1 for s in trace.samples if restart is None or s.seconds <= restart)
        family = per_family.setdefault(trace.family, {"traces": 0, "restarts": 0})
        family["traces"] += 1
        family["restarts"] += restart is not None
        if trace.leak:
            assert trace.oom_at is not None
            if restart is not None and restart < trace.oom_at:
                caught += 1
                leads.append(trace.oom_at - restart)
                usage = next(s for s in trace.samples if s.seconds >= restart)
                before_90 += usage.working_set < 0.9 * usage.limit
            else:
                missed.append(trace.name)
        elif restart is not None:
            false_restarts.append(trace.name)
    cpu = time.process_time() - started
    return {
        "detector": name,
        "leaks": len(leaks),
        "uncatchable_leaks": skipped,
        "healthy": len(healthy),
        "recall": caught / len(leaks),
        "acted_before_90_percent": before_90,
        "healthy_restarted": len(false_restarts),
        "lead_seconds_median": statistics.median(leads) if leads else None,
        "lead_seconds_min": min(leads) if leads else None,
        "missed": missed,
        "false_restarts": false_restarts,
        "per_family": per_family,
        "cpu_ms_per_sample": 1000 * cpu / max(samples_seen, 1),
    }


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def _table(title: str, rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"## {title} ({rows[0]['leaks']} leaking and {rows[0]['healthy']} healthy traces"
        + (
            f"; {len(rows[0]['uncatchable_leaks'])} leaks crossing the limit between two "
            "samples counted apart"
            if rows[0]["uncatchable_leaks"]
            else ""
        )
        + ")",
        "",
        "| detector | recall | acted before 90% | healthy pods restarted | median lead | "
        "min lead | CPU per sample |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['detector']} | {row['recall']:.3f} | {row['acted_before_90_percent']}/"
            f"{row['leaks']} | {row['healthy_restarted']}/{row['healthy']} | "
            f"{_minutes(row['lead_seconds_median'])} | {_minutes(row['lead_seconds_min'])} | "
            f"{row['cpu_ms_per_sample']:.3f} ms |"
        )
    tfops = rows[0]
    if tfops["missed"] or tfops["false_restarts"]:
        lines += [
            "",
            f"tfops missed: {', '.join(tfops['missed']) or 'none'}; healthy pods restarted: "
            f"{', '.join(tfops['false_restarts']) or 'none'}.",
        ]
    return [*lines, ""]


def write_results(results: dict[str, Any]) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory_guard.json").write_text(json.dumps(results, indent=2) + "\n")
    runs = results["runs"]
    lines = [f"# Memory-guard benchmark ({results['date']}, seed {results['seed']})", ""]
    for run in runs:
        title = (
            "Each family at its own sampling interval"
            if run["interval"] is None
            else f"Every family sampled every {run['interval']:g} s"
        )
        lines += _table(title, run["detectors"])
    rows = runs[0]["detectors"]
    lines += [
        "Restarts per family, each at its own interval (tfops / fixed threshold / least squares):",
        "",
        "| family | traces | restarts |",
        "| --- | --- | --- |",
    ]
    for family, counts in rows[0]["per_family"].items():
        others = " / ".join(str(r["per_family"][family]["restarts"]) for r in rows)
        lines.append(f"| {family} | {counts['traces']} | {others} |")
    if "long_replay" in results:
        long = results["long_replay"]
        lines += [
            "",
            f"`tfops guard replay --json` over {long['rows']:,} rows (a healthy sawtooth, 15 s "
            f"apart): {long['seconds']} s, peak RSS {long['rss_peak_mb']} MB.",
        ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "memory_guard.md").write_text(text)
    return text


def long_replay(rows: int) -> dict[str, Any]:
    """`tfops guard replay --json` over one healthy trace of `rows` samples (15 s
    apart, a noisy sawtooth), as a user runs it: wall time and peak RSS."""
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "long.csv"
        with path.open("w") as handle:
            handle.write("timestamp_seconds,working_set_bytes,limit_bytes\n")
            for index in range(rows):
                t = 15.0 * (index + 1)
                level = 3e9 * (1 + 0.3 * ((t % 600) / 600)) * (1 + rng.gauss(0, 0.01))
                handle.write(f"{t:.0f},{level:.0f},8000000000\n")
        started = time.perf_counter()
        with (Path(directory) / "out.json").open("w+") as out:
            replay = subprocess.Popen(
                [sys.executable, "-m", "tfops", "guard", "replay", "--json", str(path)],
                stdout=out,
            )
            # The replay's own peak: its VmHWM (getrusage would count this process's
            # pages the child had before exec, which are the corpus's).
            peak_kb = 0
            while replay.poll() is None:
                peak_kb = max(peak_kb, high_water_kb(replay.pid))
                time.sleep(0.2)
            seconds = time.perf_counter() - started
            if replay.returncode:
                raise RuntimeError(f"the replay exited with {replay.returncode}")
            out.seek(0)
            output = out.read()
    summary = json.loads(output)
    return {
        "rows": rows,
        "seconds": round(seconds, 1),
        "rss_peak_mb": round(peak_kb / 1024, 1),
        "restart_at": summary["restart_at"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-family", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--intervals", default="10,15,30,60", help="sampling intervals (s)")
    parser.add_argument(
        "--long-replay-rows", type=int, default=0, help="also time a replay of this many rows"
    )
    parser.add_argument("--write-corpus", type=Path, help="also write each trace as CSV here")
    args = parser.parse_args()
    traces = corpus(args.seed, args.per_family)
    if args.write_corpus:
        args.write_corpus.mkdir(parents=True, exist_ok=True)
        for trace in traces:
            label = "leak" if trace.leak else "healthy"
            write_trace(args.write_corpus / f"{label}-{trace.name}.csv", trace.samples)
    runs = []
    for interval in [None, *(float(i) for i in args.intervals.split(",") if i)]:
        sampled = traces if interval is None else corpus(args.seed, args.per_family, interval)
        detectors = [evaluate(name, fn, sampled) for name, fn in DETECTORS.items()]
        runs.append({"interval": interval, "detectors": detectors})
        print(f"interval {interval}: tfops recall {detectors[0]['recall']:.3f}", flush=True)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "seed": args.seed, "runs": runs}
    if args.long_replay_rows:
        results["long_replay"] = long_replay(args.long_replay_rows)
    print(write_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
