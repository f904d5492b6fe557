"""Sweeps: grids of runs (``grid``), resumable execution (``runner``, ``ray_backend``), results
tables (``aggregate``), plots (``plots``) and the one-file HTML report (``html``)."""

from .grid import RunSpec, Sweep, expand, load_sweep, validate_runs
from .runner import SweepResult, run_sweep

__all__ = ["RunSpec", "Sweep", "SweepResult", "expand", "load_sweep", "run_sweep", "validate_runs"]
