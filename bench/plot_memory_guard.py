"""Draw a leaking and a healthy trace with tfops' verdicts (docs/memory-guard.svg).

Plain SVG written by hand: no plotting library is needed to read the picture.
Usage: python bench/plot_memory_guard.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from tfops.memory.replay import replay
from tfops.testing.traces import Trace, healthy_traces, leak_traces

REPO = Path(__file__).resolve().parents[1]

WIDTH, PANEL, MARGIN = 900, 260, 60


def panel(trace: Trace, top: int, title: str) -> list[str]:
    steps = list(replay(trace.samples))
    samples = trace.samples[: len(steps)] if any(s.restart for s in steps) else trace.samples
    limit = samples[0].limit
    end = trace.samples[-1].seconds
    height = PANEL - 50

    def x(seconds: float) -> float:
        return MARGIN + (WIDTH - 2 * MARGIN) * seconds / end

    def y(value: float) -> float:
        return top + 30 + height * (1 - value / (limit * 1.05))

    out = [f'<text x="{MARGIN}" y="{top + 18}" font-size="14" font-weight="bold">{title}</text>']
    # Shade where the detector says "leaking".
    run_start = None
    for step in steps:
        if step.verdict.leaking and run_start is None:
            run_start = step.verdict.seconds
        if not step.verdict.leaking and run_start is not None:
            out.append(
                f'<rect x="{x(run_start):.1f}" y="{y(limit * 1.05):.1f}" '
                f'width="{x(step.verdict.seconds) - x(run_start):.1f}" height="{height}" '
                'fill="#fdd9a0"/>'
            )
            run_start = None
    if run_start is not None:
        last = steps[-1].verdict.seconds
        out.append(
            f'<rect x="{x(run_start):.1f}" y="{y(limit * 1.05):.1f}" '
            f'width="{max(2.0, x(last) - x(run_start)):.1f}" height="{height}" '
            'fill="#fdd9a0"/>'
        )
    for fraction, colour, label in ((1.0, "#c0392b", "limit"), (0.9, "#888", "90%")):
        out.append(
            f'<line x1="{MARGIN}" x2="{WIDTH - MARGIN}" y1="{y(limit * fraction):.1f}" '
            f'y2="{y(limit * fraction):.1f}" stroke="{colour}" stroke-dasharray="6 4"/>'
        )
        out.append(
            f'<text x="{WIDTH - MARGIN + 4}" y="{y(limit * fraction) + 4:.1f}" '
            f'font-size="11" fill="{colour}">{label}</text>'
        )
    points = " ".join(f"{x(s.seconds):.1f},{y(s.working_set):.1f}" for s in trace.samples)
    out.append(f'<polyline points="{points}" fill="none" stroke="#bbb" stroke-width="1"/>')
    seen = " ".join(f"{x(s.seconds):.1f},{y(s.working_set):.1f}" for s in samples)
    out.append(f'<polyline points="{seen}" fill="none" stroke="#2c6fbb" stroke-width="1.5"/>')
    restart = next((s.verdict for s in steps if s.restart), None)
    if restart is not None:
        out.append(
            f'<line x1="{x(restart.seconds):.1f}" x2="{x(restart.seconds):.1f}" '
            f'y1="{y(limit * 1.05):.1f}" y2="{y(0):.1f}" stroke="#27ae60" '
            'stroke-width="2"/>'
        )
        out.append(
            f'<text x="{x(restart.seconds) + 4:.1f}" y="{y(limit * 0.2):.1f}" '
            f'font-size="12" fill="#27ae60">restart at {restart.seconds / 60:.0f} min, '
            f"{100 * restart.usage_fraction:.0f}% of the limit</text>"
        )
    hours = end / 3600
    out.append(f'<text x="{MARGIN}" y="{top + PANEL - 4}" font-size="11" fill="#555">0</text>')
    out.append(
        f'<text x="{WIDTH - MARGIN - 30}" y="{top + PANEL - 4}" font-size="11" '
        f'fill="#555">{hours:.1f} h</text>'
    )
    return out


def main() -> int:
    leak = next(t for t in leak_traces(random.Random(5), 1) if t.family.startswith("leak under"))
    healthy = next(
        t for t in healthy_traces(random.Random(5), 1) if t.family.startswith("sawtooth")
    )
    body = [
        *panel(leak, 0, f"Leaking: {leak.family} (grey: what would have followed)"),
        *panel(healthy, PANEL, f"Healthy: {healthy.family}"),
    ]
    legend = (
        f'<text x="{MARGIN}" y="{2 * PANEL + 16}" font-size="12" fill="#555">blue: '
        'working set; orange: tfops says "leaking"; green: tfops restarts the pod</text>'
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{2 * PANEL + 30}" '
        'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        + "".join(body)
        + legend
        + "</svg>\n"
    )
    target = REPO / "docs" / "memory-guard.svg"
    target.parent.mkdir(exist_ok=True)
    target.write_text(svg)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
