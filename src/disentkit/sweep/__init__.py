"""Sweeps: grids of runs (``grid``), resumable execution (``runner``, ``ray_backend``), results
tables (``aggregate``), plots (``plots``) and the one-file HTML report (``html``).

Public names: :func:`load_sweep` and :func:`expand` (a config -> a :class:`Sweep` of :class:`RunSpec`),
:func:`validate_runs`, :func:`run_sweep` (-> a :class:`SweepResult`).

Example:

    >>> from disentkit.sweep import expand, validate_runs
    >>> sweep = expand({"name": "demo", "model": "beta_vae", "grid": {"beta": [1, 4]}, "seeds": [0, 1]})
    >>> [(run.label, run.seed) for run in sweep.runs]      # doctest: +NORMALIZE_WHITESPACE
    [('beta_vae beta=1 dsprites_procedural', 0), ('beta_vae beta=4 dsprites_procedural', 0),
     ('beta_vae beta=1 dsprites_procedural', 1), ('beta_vae beta=4 dsprites_procedural', 1)]
    >>> validate_runs(sweep.runs)         # every name is registered: nothing to say
"""

from .grid import RunSpec, Sweep, expand, load_sweep
from .validate import validate_runs
from .runner import SweepResult, run_sweep

__all__ = ["RunSpec", "Sweep", "SweepResult", "expand", "load_sweep", "run_sweep", "validate_runs"]
