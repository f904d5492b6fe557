"""Sweep progress: counts, an ETA from the runs finished so far, one line per event."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Progress:
    """Counts and ETA of a sweep, printed as one line per event."""

    total: int
    workers: int
    printer: Callable[[str], None] = print
    steps: dict[str, int] = field(default_factory=dict)        # run id -> training steps
    done: int = 0
    skipped: int = 0
    finished: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def eta(self) -> str:
        """Remaining time from a fit seconds ≈ a + b·steps over finished runs (fixed cost: start-up, metrics)."""
        left = [rid for rid in self.steps if rid not in self.finished and rid not in self.failed]
        if not left:
            return "0s"
        if not self.durations:
            return "?"
        a, b = _fit_cost([(self.steps[r], sec) for r, sec in self.durations.items()])
        now = time.time()
        work = sum(max(0.0, a + b * self.steps[r] - (now - self.running[r])) if r in self.running
                   else a + b * self.steps[r] for r in left)
        return _duration(work / max(1, self.workers))

    last_line: float = field(default_factory=time.time)

    def line(self, what: str) -> None:
        finished = self.done + self.skipped
        self.printer(f"[{finished}/{self.total} done, {len(self.running)} running, {len(self.failed)} failed, "
                     f"ETA {self.eta()}] {what}")
        self.last_line = time.time()


def _fit_cost(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares (a, b) of seconds = a + b·steps, both ≥ 0; proportional when all runs have one length."""
    xs = [float(x) for x, _ in points]
    ys = [y for _, y in points]
    if len(set(xs)) < 2:
        return 0.0, sum(ys) / max(1.0, sum(xs))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    b = max(0.0, b)
    return max(0.0, my - b * mx), b


def _duration(secs: float) -> str:
    secs = int(round(secs))
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s"
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m"
