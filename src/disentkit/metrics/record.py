"""``metrics.json``: what was evaluated (checkpoint bytes, dataset, seed, representation) and the results.

``disentkit evaluate`` and the sweep runner write the same record. Evaluating one metric at a time adds
to the record only when it describes the same evaluation; a record of another evaluation is kept aside
(``metrics.previous.json``), never mixed in and never lost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..data.download import hash_file

#: besides the checkpoint's bytes, the keys that say which evaluation a record describes
CONTEXT_KEYS = ("model", "dataset", "seed", "representation")


def evaluation_context(checkpoint: str | Path, model: str, dataset: Any, seed: int,
                       representation: str) -> dict[str, Any]:
    """The header of a record: which checkpoint (path and content hash), model, dataset, seed and code."""
    return dict(checkpoint=str(checkpoint), checkpoint_sha256=hash_file(checkpoint)["sha256"], model=model,
                dataset=dataset.name, seed=int(seed), representation=representation,
                factor_names=list(dataset.factor_names))


def same_evaluation(record: dict[str, Any], context: dict[str, Any]) -> bool:
    """Whether ``record`` describes the evaluation ``context`` does (a record written before hashes were kept
    matches on the checkpoint path instead)."""
    if any(record.get(k) != context.get(k) for k in CONTEXT_KEYS):
        return False
    if "checkpoint_sha256" in record:
        return record["checkpoint_sha256"] == context["checkpoint_sha256"]
    return record.get("checkpoint") == context["checkpoint"]


def earlier_record(out: str | Path, context: dict[str, Any]) -> dict[str, Any]:
    """The record at ``out`` when it describes the same evaluation (so results add up), else ``{}`` after
    moving that file to ``<stem>.previous[-N].json`` (with a note on stderr)."""
    out = Path(out)
    if not out.is_file():
        return {}
    try:
        record = json.loads(out.read_text())
    except ValueError:
        record = None
    if isinstance(record, dict) and same_evaluation(record, context):
        return record
    keep = out.with_name(f"{out.stem}.previous.json")
    n = 1
    while keep.exists():
        n += 1
        keep = out.with_name(f"{out.stem}.previous-{n}.json")
    out.rename(keep)
    print(f"note: {out} held the results of another evaluation (another checkpoint, dataset, seed or "
          f"representation); kept them as {keep}", file=sys.stderr)
    return {}
