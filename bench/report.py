"""Results: one row per metric, printed as value, baseline, ratio, target and whether it is met."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """``value <op> threshold``; ``on`` says whether the value or the ratio is judged."""

    op: str  # ">=" or "<"
    threshold: float
    on: str = "value"  # "value" or "ratio"
    unit: str = ""

    def describe(self) -> str:
        subject = "ratio" if self.on == "ratio" else ""
        number = f"{self.threshold:g}" if self.on == "ratio" else f"{self.threshold:,g}"
        return f"{subject} {self.op} {number}{(' ' + self.unit) if self.unit else ''}".strip()

    def met(self, value: float, ratio: float) -> bool | None:
        judged = ratio if self.on == "ratio" else value
        if math.isnan(judged):
            return None
        return judged >= self.threshold if self.op == ">=" else judged < self.threshold


@dataclass(frozen=True)
class Result:
    bench: str
    metric: str
    value: float
    unit: str
    baseline: float
    baseline_name: str
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        if math.isnan(self.value) or math.isnan(self.baseline) or self.baseline == 0:
            return math.nan
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value, self.ratio)


def _num(x: float, unit: str) -> str:
    if math.isnan(x):
        return "n/a"
    if unit == "ms" or abs(x) < 10:
        return f"{x:,.2f} {unit}".strip()
    return f"{x:,.0f} {unit}".strip()


def _verdict(met: bool | None, has_target: bool) -> str:
    if not has_target:
        return ""
    return {True: "yes", False: "NO", None: "n/a"}[met]


def print_table(results: Iterable[Result], out: Callable[[str], None] = print) -> None:
    rows = [("metric", "value", "baseline", "ratio", "target", "met?")]
    for r in results:
        rows.append(
            (
                r.metric,
                _num(r.value, r.unit),
                f"{_num(r.baseline, r.unit)} ({r.baseline_name})",
                "n/a" if math.isnan(r.ratio) else f"{r.ratio:.3f}",
                r.target.describe() if r.target else "",
                _verdict(r.met, r.target is not None),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    sep = "-+-".join("-" * w for w in widths)
    for n, row in enumerate(rows):
        out(
            " | ".join(
                cell.ljust(w) if i in (0, 2, 4) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            out(sep)


def print_notes(results: Iterable[Result], out: Callable[[str], None] = print) -> None:
    for r in results:
        if r.note:
            out(f"  * {r.metric}: {r.note}")


#: Other processes using more than this share of one core make a result suspect.
DISTURBED_SHARE = 0.15
MACHINE = "(machine)"  # the same key as bench.harness.MACHINE


def cpu_line(before: dict[str, float], after: dict[str, float], wall_s: float, client_cpu_s: float) -> str:
    """Share of one core used by each part of the server, the load client, and any other
    process on the machine (which would disturb the result) over ``wall_s``."""
    if wall_s <= 0:
        return "CPU: n/a"
    parts = []
    ours = client_cpu_s
    for name in sorted(after, key=lambda n: -(after[n] - before.get(n, 0.0))):
        if name == MACHINE:
            continue
        used = after[name] - before.get(name, 0.0)
        ours += used
        if used > 0.005 * wall_s:
            parts.append(f"{name} {100 * used / wall_s:.0f}%")
    parts.append(f"bench client {100 * client_cpu_s / wall_s:.0f}%")
    if MACHINE in after and MACHINE in before:
        parts.append(other_load(after[MACHINE] - before[MACHINE] - ours, wall_s))
    return "CPU (% of one core): " + ", ".join(parts)


DISTURBED_NOTE = "; other processes used the CPU during the run (see the log above), so take it with salt"


def disturbed(*cpu_lines: str) -> str:
    """The note to add to a result whose CPU lines show other load on the machine."""
    return DISTURBED_NOTE if any("DISTURBED" in line for line in cpu_lines) else ""


def other_load(other_cpu_s: float, wall_s: float) -> str:
    share = max(0.0, other_cpu_s) / wall_s
    text = f"other processes {100 * share:.0f}%"
    return text + " (DISTURBED: the machine was not idle)" if share > DISTURBED_SHARE else text
