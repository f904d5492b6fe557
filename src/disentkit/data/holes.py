"""Held-out factor combinations (Montero et al., ICLR 2021, "The role of disentanglement in generalisation"):
training never sees the images in a *hole* of the factor grid; ``evaluate --metrics recombination`` then
compares reconstruction (and MIG) on the held-out and the seen combinations.

A hole is a conjunction of conditions on factor values, in the dataset's own units and labels::

    dsprites_procedural:holes(shape=heart & scale>=0.8)
    dsprites_procedural:corr(posX,posY,0.2):holes(posX>0.5)

Conditions: ``factor OP value`` with OP one of ``= == != < <= > >=``; a value is a number or, for a
categorical factor, one of its labels (``=`` / ``!=`` only). The hole is a box of the grid (per factor,
the classes its conditions allow), so its kind follows from which factors it constrains:

- **extrapolation**: one factor constrained: some of its values never occur in training (posX > 0.5);
- **recombination-to-range**: several factors constrained, some left free: a value of one factor is never
  seen with a range of another (squares never on the right half);
- **recombination-to-element**: every factor constrained: one corner of the grid is held out, each value
  and most combinations seen.

Montero et al.'s dSprites splits are named presets (their datasplits, on this project's factor names):
``holes(extrapolation)`` posX > 0.5, ``holes(recombination_to_range)`` shape = square & posX > 0.5,
``holes(recombination_to_element)`` shape = ellipse & scale > 0.6 & 2π/3 < orientation < 4π/3 &
posX > 0.66 & posY > 0.66.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import DisentkitError
from .base import FactorDataset
from .variant import DatasetVariant

SPEC = re.compile(r"^holes\((.*)\)$", re.S)
CONDITION = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(<=|>=|!=|==|=|<|>)\s*([^\s&<>=!]+)\s*$")
TOL = 1e-9      # grid values are floats (linspace): scale>=0.8 must hold for a stored 0.7999999999999999
OPS = {"=": lambda a, b: np.abs(a - b) <= TOL, "==": lambda a, b: np.abs(a - b) <= TOL,
       "!=": lambda a, b: np.abs(a - b) > TOL, "<": lambda a, b: a < b - TOL, "<=": lambda a, b: a <= b + TOL,
       ">": lambda a, b: a > b + TOL, ">=": lambda a, b: a >= b - TOL}
PRESETS = {
    "extrapolation": "posX>0.5",
    "recombination_to_range": "shape=square & posX>0.5",
    "recombination_to_element": "shape=ellipse & scale>0.6 & orientation>2.0944 & orientation<4.1888 & "
                                "posX>0.66 & posY>0.66",
}
KINDS = ("extrapolation", "recombination-to-range", "recombination-to-element")


@dataclass(frozen=True)
class Condition:
    factor: str
    op: str
    value: str

    def classes(self, dataset: FactorDataset) -> np.ndarray:
        """Bool (size,) over the factor's classes: which satisfy this condition."""
        f = dataset.factors[dataset.factor_names.index(self.factor)]
        if f.labels and self.value in f.labels:
            if self.op not in ("=", "==", "!="):
                raise DisentkitError(f"holes(): {self.factor} is categorical ({', '.join(f.labels)}); compare it "
                                     f"with = or !=, not {self.op}")
            hit = np.arange(f.size) == f.labels.index(self.value)
            return ~hit if self.op == "!=" else hit
        try:
            number = float(self.value)
        except ValueError:
            known = f"one of {', '.join(f.labels)} or a number" if f.labels else "a number"
            raise DisentkitError(f"holes(): {self.factor}{self.op}{self.value}: the value must be {known}") from None
        return np.asarray(OPS[self.op](np.asarray(f.values, dtype=np.float64), number), dtype=bool)


def parse_holes(spec: str, dataset: FactorDataset) -> tuple[str, list[Condition]]:
    """``holes(EXPR)`` (or a preset name inside) -> (the expression, its conditions), checked against
    ``dataset``'s factors."""
    m = SPEC.match(spec.strip())
    if not m:
        raise DisentkitError(f"unknown dataset variant '{spec}'; write e.g. "
                             "'dsprites_procedural:holes(shape=heart & scale>=0.8)'")
    expr = m.group(1).strip()
    expr = PRESETS.get(expr, expr)
    if not expr:
        raise DisentkitError("holes(): name the held-out combinations, e.g. holes(shape=heart & scale>=0.8), or a "
                             f"preset: {', '.join(PRESETS)}")
    conditions = []
    for part in expr.split("&"):
        c = CONDITION.match(part)
        if not c:
            raise DisentkitError(f"holes(): cannot read '{part.strip()}'; write factor OP value, e.g. scale>=0.8 "
                                 "(OP: = != < <= > >=), joined by &")
        cond = Condition(*c.groups())
        if cond.factor not in dataset.factor_names:
            raise DisentkitError(f"holes(): dataset '{dataset.name}' has no factor '{cond.factor}'; its factors are "
                                 f"{', '.join(dataset.factor_names)}")
        conditions.append(cond)
    return expr, conditions


class Holes(DatasetVariant):
    """``base`` with the images of a hole held out of training (all of them still there for evaluation)."""

    def __init__(self, base: FactorDataset, spec: str) -> None:
        if not base.has_factors:
            raise DisentkitError(f"holes(): dataset '{base.name}' has no ground-truth factors to hold out")
        self.expression, self.conditions = parse_holes(spec, base)
        super().__init__(base, f"{base.name}:{spec.strip()}")
        allowed = [np.ones(s, dtype=bool) for s in base.factor_sizes]
        for c in self.conditions:
            i = base.factor_names.index(c.factor)
            allowed[i] &= c.classes(base)
        self.hole_classes = allowed                    # per factor: the classes inside the hole
        box = np.ones(base.factor_sizes, dtype=bool)
        for i, a in enumerate(allowed):
            box &= a.reshape([-1 if j == i else 1 for j in range(len(allowed))])
        self.held_out = box.ravel()                    # grid (C) order = index order, the last factor fastest
        count = int(self.held_out.sum())
        if count == 0:
            raise DisentkitError(f"holes({self.expression}) holds out no image of {base.name}; check the values "
                                 "against the factors (disentkit datasets info)")
        keep = ~self.held_out
        base_allowed = base.training_images()          # a base with holes of its own: those stay out too
        if base_allowed is not None:
            keep &= np.isin(np.arange(base.num_images), base_allowed)
        train = np.flatnonzero(keep)
        if len(train) == 0:
            raise DisentkitError(f"holes({self.expression}) holds out every image of {base.name}: nothing is left "
                                 "to train on")
        self._train, self._held = train, np.flatnonzero(self.held_out)
        constrained = [i for i, a in enumerate(allowed) if not a.all()]
        movable = [i for i, s in enumerate(base.factor_sizes) if s > 1]
        self.kind = (KINDS[0] if len(constrained) == 1 else
                     KINDS[2] if set(movable) <= set(constrained) else KINDS[1])

    def training_images(self) -> np.ndarray:
        return self._train

    def held_out_images(self) -> np.ndarray:
        """Sorted indices of the images in the hole."""
        return self._held

    def describe(self) -> dict:
        d = super().describe()
        d["holes"] = {"expression": self.expression, "kind": self.kind, "held_out_images": len(self._held)}
        return d
