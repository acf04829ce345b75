"""Plots for the reports, as inline SVG strings (matplotlib, headless Agg backend).

Three figures: pass@1 per profile with 95 % Wilson intervals against the references; the
history trend per profile; throughput. Output is deterministic for equal input (fixed
SVG hash salt, no date metadata), so rebuilt reports compare equal.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

from plugin.gate.record import Row

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from plugin.gate.stats import wilson_interval

plt.rcParams.update({"svg.hashsalt": "llama-bench", "svg.fonttype": "none",
                     "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline SVG


def _label(row: Row) -> str:
    return f"{row['profile']} ({row['dataset']})"


# Marker colour of a row by its gate verdict: failing points are the ones to see.
_GATE_COLOUR = {"fail_tolerance": "#c00000", "fail_drop": "#c00000",
                "flagged_rise": "#d07000"}


def zoomed(values: Sequence[float], margin: float = 5.0) -> tuple[float, float]:
    """An axis range around ``values`` (percent), at least 10 points wide, inside 0-100."""
    low, high = max(0.0, min(values) - margin), min(100.0, max(values) + margin)
    if high - low < 10.0:
        low, high = (0.0, 10.0) if low < 5.0 else (
            (90.0, 100.0) if high > 95.0 else (low, low + 10.0))
    return low, high


def pass_at_1_svg(rows: Sequence[Row]) -> str:
    """plus pass@1 per profile with its 95 % interval; reference +/- tolerance as a band.
    Failing rows in red, flagged ones in orange; the axis is zoomed around the data and
    the legend sits outside it."""
    fig, ax = plt.subplots(figsize=(7.5, 0.7 + 0.45 * max(1, len(rows))))
    seen: set[str] = set()
    extent: list[float] = []
    for i, row in enumerate(rows):
        low, high = row.plus_ci
        value = row.plus_pass_at_1
        colour = _GATE_COLOUR.get(str(row.gate), "tab:blue")
        name = "failing gate" if colour == "#c00000" else (
            "flagged rise" if colour == "#d07000" else "plus pass@1, 95% CI")
        ax.errorbar([value], [i], xerr=[[value - low], [high - value]], fmt="o",
                    color=colour, capsize=3, label=None if name in seen else name)
        seen.add(name)
        extent += [low, high]
        ref = row.reference
        if ref is not None:
            tol = row.tolerance_pp or 0.0
            ax.plot([ref], [i], marker="|", markersize=16, markeredgewidth=3,
                    color="black", label=None if "reference" in seen else "reference")
            seen.add("reference")
            extent += [ref - tol, ref + tol]
            if tol:
                ax.barh([i], [2 * tol], left=[ref - tol], height=0.5, color="gray",
                        alpha=0.2)
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows])
    ax.set_xlim(*zoomed(extent or [0.0, 100.0]))
    ax.invert_yaxis()
    ax.set_xlabel("pass@1 (%), axis zoomed to the data")
    ax.set_title("plus pass@1 with 95% Wilson interval vs reference (band: tolerance)")
    if rows:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _svg(fig)


def trend_svg(trend: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """plus pass@1 of every stored run per profile over time (run order); pins marked."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    extent: list[float] = []
    longest = 1
    for label, all_points in sorted(trend.items()):
        points = distinct_runs(all_points)
        longest = max(longest, len(points))
        xs = list(range(1, len(points) + 1))
        ys = [p["plus_pass_at_1"] for p in points]
        cis = [wilson_interval(p["plus_passed"], p["n_tasks"]).percent() for p in points]
        line = ax.plot(xs, ys, marker="o", label=label)[0]
        ax.fill_between(xs, [c[0] for c in cis], [c[1] for c in cis],
                        color=line.get_color(), alpha=0.12)
        extent += [c[0] for c in cis] + [c[1] for c in cis]
        pinned = [(x, p["plus_pass_at_1"]) for x, p in zip(xs, points, strict=True)
                  if p.get("pinned")]
        if pinned:
            ax.plot(*zip(*pinned, strict=True), marker="s", linestyle="none", markersize=9,
                    markerfacecolor="none", color=line.get_color())
    ax.set_ylim(*zoomed(extent or [0.0, 100.0]))
    ax.set_xlim(0.5, longest + 0.5)  # one run: one point in the middle, tick "1"
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))
    ax.set_xlabel("run (oldest first; re-runs with reused answers count once; square = "
                  "pinned baseline)")
    ax.set_ylabel("plus pass@1 (%)")
    ax.set_title("History: plus pass@1 per profile (band: 95% interval)")
    if trend:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _svg(fig)


def distinct_runs(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Consecutive runs with the same fingerprint and the same result are one point (a
    re-run that reused its answers); the point is pinned if any of them was."""
    kept: list[Mapping[str, Any]] = []
    for point in points:
        last = kept[-1] if kept else None
        same = last is not None and point.get("fingerprint") and all(
            last.get(k) == point.get(k) for k in ("fingerprint", "plus_passed", "n_tasks"))
        if same and last is not None:
            kept[-1] = {**last, "pinned": bool(last.get("pinned") or point.get("pinned"))}
        else:
            kept.append(point)
    return kept


def throughput_svg(rows: Sequence[Row]) -> str:
    """Generation tokens/s and wall time (load, generation, evaluation) per profile."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 0.8 + 0.45 * max(1, len(rows))),
                                      sharey=True)
    ys = list(range(len(rows)))
    left.barh(ys, [r.tokens_per_s or 0.0 for r in rows], color="tab:green")
    left.set_xlabel("generation tokens/s")
    parts = (("load_time_s", "load", "tab:gray"), ("gen_wall_s", "generate", "tab:blue"),
             ("eval_wall_s", "evaluate", "tab:orange"))
    start = [0.0] * len(rows)
    for key, name, color in parts:
        widths = [float(r.get(key) or 0.0) for r in rows]
        right.barh(ys, widths, left=start, color=color, label=name)
        start = [s + w for s, w in zip(start, widths, strict=True)]
    right.set_xlabel("wall time (s)")
    left.set_yticks(ys, [_label(r) for r in rows])
    left.invert_yaxis()
    if rows:
        right.legend(fontsize=7, loc="lower right")
    fig.suptitle("Throughput")
    return _svg(fig)
