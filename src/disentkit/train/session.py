"""Everything one training run holds while its loop runs: members, step, batches, loggers, best losses.

:meth:`Session.open` sets a run up (device and precision through Lightning Fabric, the dataset placed on the
device, the subset and split, the members, optimizers and step) and either starts it (``config.yaml``,
loggers) or restores it from its ``training_state.pt`` (weights, optimizers, generators, step, best
validation loss; logged rows after the saved step are dropped, TensorBoard purges them). Its methods are the
loop's periodic actions: writing logs, validating, metrics, checkpoints.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

from ..data import get_dataset
from ..errors import DisentkitError
from ..models import GaussianVAE
from .checkpoint import STATE_FILE, load_state, read_checkpoint, save_checkpoint, save_state
from .config import TrainConfig
from .data import Batches, Indices, fixed_batches, pair_k, plan_indices
from .fast import autocast_for
from .guard import DIVERGED_FILE, Divergence, finite_weights, keep_last_good
from .status import FINISHED_FILE
from .members import Members, Single, Stacked
from .run import read_init_from, resolve_device
from .step import Step, held_out_losses, make_optimizers
from .tensorboard import log_hparams, log_images, write_layout

VAL_SEED, TEST_SEED = 1_000_003, 2_000_003   # offsets of the held-out noise generators from a member's seed


@dataclass
class Tracker:
    """A member's validation record: best loss, validations since it improved, whether it stopped."""

    best: float = math.inf
    bad: int = 0
    stopped: bool = False
    stopped_at: int | None = None
    diverged_at: int | None = None   # the step its loss or weights went NaN/inf (it stopped then)


class Session:
    def __init__(self) -> None:  # built by open()
        self.done = 0
        self.last_logs: list[dict[str, float]] = []
        self.divergences: list[str] = []   # one line per member that went NaN/inf

    # ------------------------------------------------------------------ set-up
    @classmethod
    def open(cls, config: TrainConfig, members: list[TrainConfig], run_dir: Path, resume: bool,
             vae: GaussianVAE | None = None) -> "Session":
        from lightning.fabric import Fabric

        s = cls()
        s.config, s.run_dir = config, Path(run_dir)
        device = resolve_device(config.device)
        if config.precision == "16-mixed" and device.type != "cuda":
            raise DisentkitError("--precision 16-mixed needs a CUDA GPU (a gradient scaler for fp16); on a CPU use "
                                 "bf16-mixed or 32-true")
        s.fabric = Fabric(**fabric_args(device, config.precision))
        s.device = s.fabric.device
        if config.eval_every:
            from ..metrics import METRICS, monitoring_params, resolve_metrics
            from ..metrics.utils import check_params

            s.eval_names = resolve_metrics(config.eval_metrics)  # unknown names fail before training
            unknown = sorted(set(config.eval_params) - set(s.eval_names))
            if unknown:
                raise DisentkitError(f"--eval-params names {', '.join(unknown)}, not among --eval-metrics "
                                     f"{','.join(s.eval_names)}; add it there or drop its parameters")
            s.eval_params = monitoring_params(s.eval_names, config.eval_params)
            for name, params in s.eval_params.items():
                check_params(METRICS[name], params)  # a wrong parameter fails now, not at the first evaluation
        s.dataset = get_dataset(config.dataset, data_root=config.data_root)
        s.dataset.place(s.device)
        s.user_vae = vae  # a user's encoder/decoder, wrapped and checked by run.user_vae
        s.indices: Indices = plan_indices(s.dataset.num_images, config.split_fractions(), config.subsample,
                                          config.data_seed, s.dataset.training_images())
        per_epoch = s.indices.num_train // config.batch_size
        if config.epochs and per_epoch == 0:
            raise DisentkitError(f"--batch-size {config.batch_size} exceeds the {s.indices.num_train:,} training "
                                 "images: an epoch has no full batch")
        s.total = config.epochs * per_epoch if config.epochs else config.steps
        s.val_every = (config.val_every or (per_epoch if config.epochs else 500)) if s.indices.val is not None else 0
        s.checkpoint_every = config.checkpoint_every or max(1, s.total // 20)
        recorded = dict(channels=s.dataset.observation_shape[0], factor_names=list(s.dataset.factor_names),
                        num_images=s.dataset.num_images, num_train=s.indices.num_train)
        s.cfgs = [{**m.to_dict(), **recorded} for m in members]
        s.members = s._build_members()
        if config.compile != "off":
            s.members.compile(config.compile)
        cuda_graphs = config.cuda_graphs
        s.step_fn = Step(s.members, make_optimizers(s.members, s.cfgs[0], cuda_graphs and device.type == "cuda"),
                         config.precision,
                         (lambda: autocast_for(config.precision, s.device, cache_enabled=False)) if cuda_graphs
                         else s.fabric.autocast, cuda_graphs=cuda_graphs)
        s.batches = Batches(s.dataset, s.indices.train, config.batch_size, [int(c["seed"]) for c in s.cfgs], s.device,
                            epochs=bool(config.epochs), rng=config.ensemble_rng, pairs_k=pair_k(s.members.objective))
        s.trackers = [Tracker() for _ in s.cfgs]
        state_path = s.run_dir / STATE_FILE
        kept_rows = s._restore(load_state(state_path)) if resume and state_path.is_file() else None
        if kept_rows is None:
            s._start()
        elif s.done > s.total:
            raise DisentkitError(f"{run_dir} has trained {s.done} steps, more than the {s.total} asked for now")
        s.started_at = s.done
        s._reopen()
        s._open_loggers(kept_rows)
        return s

    def _build_members(self) -> Members:
        init = [read_init_from(c["init_from"], c) if c.get("init_from") else None for c in self.cfgs]
        if any(init) and not all(init):
            raise DisentkitError("either every member of an ensemble starts from a checkpoint (--init-from) or none")
        if len(self.cfgs) == 1:
            return Single(self.cfgs[0], self.device, init[0], channels_last=self.config.channels_last,
                          vae=self.user_vae)
        return Stacked(self.cfgs, self.device, self.config.ensemble_impl, self.config.ensemble_rng,
                       init if any(init) else None)

    def _start(self) -> None:
        """A new run (or one killed before its first checkpoint): its config files, no earlier logs."""
        for cfg in self.cfgs:
            out = Path(cfg["out"])
            for stale in ("csv", "tb"):
                if (out / stale).is_dir():
                    shutil.rmtree(out / stale)
            (out / "last.safetensors").unlink(missing_ok=True)
            member = {k: v for k, v in cfg.items() if k not in ("channels", "factor_names", "num_images", "num_train")}
            (out / "config.yaml").write_text(TrainConfig.from_dict(member).to_yaml())
        if len(self.cfgs) > 1:
            summary = {"members": [{"out": c["out"], "seed": c["seed"], "hparams": c["hparams"]} for c in self.cfgs],
                       **({"ensemble": self.config.ensemble} if self.config.ensemble else {})}
            (self.run_dir / "ensemble.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(summary, default=str)),
                                                                       sort_keys=False))
            if self.config.ensemble:
                (self.run_dir / "config.yaml").write_text(self.config.to_yaml())

    def _reopen(self) -> None:
        """A run that trains again is not finished, and a member that trains again has not diverged."""
        for cfg, t in zip(self.cfgs, self.trackers):
            if not t.stopped:
                for name in (FINISHED_FILE, DIVERGED_FILE):
                    (Path(cfg["out"]) / name).unlink(missing_ok=True)
        (self.run_dir / FINISHED_FILE).unlink(missing_ok=True)

    def _restore(self, state: dict[str, Any]) -> list[list[dict]]:
        """Put the run back where its state was saved; returns each member's logged rows up to then."""
        outs = [c["out"] for c in self.cfgs]
        if state["members"] != outs:
            raise DisentkitError(f"{self.run_dir / STATE_FILE} belongs to other members "
                                 f"({', '.join(state['members'])}); start the run again with --overwrite")
        self.members.module().load_state_dict(state["model"])
        self.step_fn.load_state_dict(state["step"])
        self.batches.load_state_dict(state["batches"])
        for g, gs in zip(self.members.generators, state["noise"]):
            g.set_state(gs)
        self.trackers = [Tracker(**t) for t in state["trackers"]]
        self.done = int(state["done"])
        return [read_rows(Path(c["out"]) / "csv" / "metrics.csv", self.done) for c in self.cfgs]

    def state(self) -> dict[str, Any]:
        """The complete training state (see :func:`~disentkit.train.checkpoint.save_state`)."""
        cpu = {k: v.detach().cpu() for k, v in self.members.module().state_dict().items()}
        return {"done": self.done, "total": self.total, "members": [c["out"] for c in self.cfgs], "model": cpu,
                "step": self.step_fn.state_dict(), "batches": self.batches.state_dict(),
                "noise": [g.get_state() for g in self.members.generators],
                "trackers": [asdict(t) for t in self.trackers], "config": self.config.to_dict()}

    def _open_loggers(self, kept_rows: list[list[dict]] | None) -> None:
        from lightning.fabric.loggers import CSVLogger, TensorBoardLogger

        self.loggers = []
        for i, cfg in enumerate(self.cfgs):
            out = Path(cfg["out"])
            (out / "csv" / "metrics.csv").unlink(missing_ok=True)  # its rows up to the saved step are re-logged
            tb = TensorBoardLogger(out, name="tb", version="", default_hp_metric=False,
                                   **({"purge_step": self.done} if kept_rows is not None else {}))
            write_layout(tb)
            logs = [CSVLogger(out, name="csv", version=""), tb]
            for row in (kept_rows[i] if kept_rows else []):
                logs[0].log_metrics({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))
            self.loggers.append(logs)
        self.flush_logs()

    def all_loggers(self) -> Iterator:
        return (lg for logs in self.loggers for lg in logs)

    def flush_logs(self) -> None:
        for lg in self.all_loggers():
            lg.save()

    # ------------------------------------------------------------------ the loop's actions
    def step(self, batch: torch.Tensor, noise: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.config.channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.step_fn(batch, noise)

    def per_member(self, logs: dict[str, torch.Tensor]) -> list[dict[str, float]]:
        """Each member's logged values as floats, read from the device in one transfer."""
        m = len(self.cfgs)
        values = torch.stack([v.detach().float().reshape(m) for v in logs.values()]).cpu().tolist()
        return [{k: values[j][i] for j, k in enumerate(logs)} for i in range(m)]

    def write_logs(self, i: int, logs: dict[str, torch.Tensor]) -> list[dict[str, float]]:
        rows = self.per_member(logs)
        epoch = (self.done - 1) // self.batches.steps_per_epoch if self.config.epochs else 0
        for row, (csv_log, tb), t in zip(rows, self.loggers, self.trackers):
            if t.stopped:  # a stopped member's run has ended: its log too
                continue
            values = {"epoch": epoch, **{f"train/{k}": v for k, v in row.items()}}
            csv_log.log_metrics(values, step=i)
            tb.log_metrics(values, step=i)
        return rows

    def postfix(self) -> str:
        if not self.last_logs:
            return ""
        losses = [r.get("loss", float("nan")) for r in self.last_logs]
        return f"loss {losses[0]:.4g}" if len(losses) == 1 else f"mean loss {sum(losses) / len(losses):.4g}"

    def validate(self, i: int) -> None:
        """Validation losses of every member; a better one writes its ``best.safetensors``; K validations
        without improvement (``--early-stopping-patience``) stop that member, with its weights saved."""
        assert self.indices.val is not None
        val = self.indices.val[: self.config.val_batches * self.config.batch_size]
        results = held_out_losses(self.members, fixed_batches(self.dataset, val, self.config.batch_size, self.device),
                                  self.step_fn.count, [int(c["seed"]) + VAL_SEED for c in self.cfgs])
        patience = self.config.early_stopping_patience
        for m, (cfg, t, res) in enumerate(zip(self.cfgs, self.trackers, results)):
            if t.stopped:
                continue
            for lg in self.loggers[m]:
                lg.log_metrics({f"val/{k}": v for k, v in res.items()}, step=i)
            if res["loss"] < t.best:
                t.best, t.bad = res["loss"], 0
                self.save_member(m, "best.safetensors", val_loss=t.best)
            else:
                t.bad += 1
                if patience and t.bad >= patience:
                    t.stopped, t.stopped_at = True, self.done
                    self.save_member(m, "model.safetensors", stopped_early=True)

    def save_member(self, m: int, name: str, **meta) -> None:
        """Member m's weights as a single run's checkpoint ``<its folder>/name``, at the current step."""
        cfg = self.cfgs[m]
        save_checkpoint(Path(cfg["out"]) / name, self.members.member_state(m), cfg, step=self.done, **meta)

    def all_stopped(self) -> bool:
        return all(t.stopped for t in self.trackers)

    def check_finite(self, weights: bool = False) -> None:
        """Stop every member whose loss went NaN/inf since the last check (``weights``: or whose weights are,
        as before a checkpoint); its last finite checkpoint becomes its result (:mod:`.guard`)."""
        live = {m for m, t in enumerate(self.trackers) if not t.stopped}
        found = [d for d in self.step_fn.guard.diverged() if d.member in live]
        if weights:
            seen = {d.member for d in found}
            found += [Divergence(m, self.done, ["weights"]) for m in sorted(live - seen)
                      if not finite_weights(self.members.member_state(m))]
        for d in found:
            t = self.trackers[d.member]
            t.stopped, t.stopped_at, t.diverged_at = True, self.done, d.step
            self.divergences.append(keep_last_good(Path(self.cfgs[d.member]["out"]), d, self.cfgs[d.member],
                                                   self.done, self.checkpoint_every))

    def log_metrics(self, i: int) -> None:
        """``--eval-every``: the named metrics of every member, logged as ``metrics/<name>``."""
        from ..metrics import evaluate, representation_function

        for m, cfg in enumerate(self.cfgs):
            if self.trackers[m].stopped:
                continue
            encode = representation_function(self.members.member_vae(m), "mean", seed=int(cfg["seed"]))
            results = evaluate(encode, self.dataset, self.eval_names, seed=int(cfg["seed"]),
                               params=self.eval_params)
            for lg in self.loggers[m]:
                lg.log_metrics({f"metrics/{n}": float(r[n]) for n, r in results.items()}, step=i)

    def log_images(self, i: int, final: bool = False) -> None:
        """Reconstructions and traversals of every member still training (``final``: of every member), to its
        TensorBoard (``--image-every``, and once at the end), except those that diverged."""
        for m, cfg in enumerate(self.cfgs):
            t = self.trackers[m]
            if (final or not t.stopped) and t.diverged_at is None:
                log_images(self.loggers[m][1], self.members.member_vae(m), self.dataset, i, int(cfg["seed"]))

    def log_hparams(self) -> None:
        """Each member's settings for TensorBoard's HParams tab, beside its logged losses (at the end)."""
        for m, cfg in enumerate(self.cfgs):
            log_hparams(self.loggers[m][1].experiment, cfg, self.done)

    def checkpoint(self) -> None:
        """Logs flushed, each member's ``last.safetensors``, then the training state (all atomic); only from
        finite weights (a member that went NaN/inf stops instead, :meth:`check_finite`)."""
        self.check_finite(weights=True)
        if self.all_stopped():
            return
        self.flush_logs()
        for m in range(len(self.cfgs)):
            if not self.trackers[m].stopped:
                self.save_member(m, "last.safetensors")
        save_state(self.run_dir / STATE_FILE, self.state())

    def test_losses(self) -> list[dict | None]:
        """With a test split: each member's mean test losses at its best checkpoint (``test_losses.json``)."""
        if self.indices.test is None:
            return [None] * len(self.cfgs)
        out: list[dict | None] = []
        for cfg, t in zip(self.cfgs, self.trackers):
            folder = Path(cfg["out"])
            if t.diverged_at:   # its result is what it kept, not scored here
                out.append(None)
                continue
            ckpt = folder / ("best.safetensors" if (folder / "best.safetensors").is_file() else "model.safetensors")
            state, _, meta = read_checkpoint(ckpt)
            model = Single(cfg, self.device)
            model.module().load_state_dict(state)
            step = torch.tensor(int(meta.get("step", 0)), device=self.device)   # the checkpoint's own step
            res = held_out_losses(model, fixed_batches(self.dataset, self.indices.test, self.config.batch_size,
                                                       self.device), step, [int(cfg["seed"]) + TEST_SEED])[0]
            record = {"checkpoint": ckpt.name, "step": int(meta.get("step", 0)), "num_images": len(self.indices.test),
                      "test": res}
            (folder / "test_losses.json").write_text(json.dumps(record, indent=1))
            out.append(res)
        return out

    # ------------------------------------------------------------------ context
    @contextlib.contextmanager
    def deterministic(self) -> Iterator[None]:
        """On a CPU: deterministic algorithms (same seed, same weights) without their debugging aid of filling
        every new tensor with NaN (≈ 190 fills and ≈ 4 ms of a batch-64 step on the 2-core CPU; no result
        changes); both restored afterwards."""
        if self.device.type != "cpu":
            yield
            return
        was, fill = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was)
            torch.utils.deterministic.fill_uninitialized_memory = fill

    @contextlib.contextmanager
    def progress_bar(self):
        from tqdm import tqdm

        label = self.run_dir.name + (f" ({len(self.cfgs)} members)" if len(self.cfgs) > 1 else "")
        tty = sys.stderr.isatty()
        bar = tqdm(total=self.total, initial=self.done, desc=label, unit="step", file=sys.stderr,
                   disable=not self.config.progress, dynamic_ncols=True, mininterval=0.2 if tty else 0,
                   miniters=progress_refresh_rate(self.total, self.config.log_every, tty))
        try:
            yield bar
        finally:
            bar.close()


def fabric_args(device: torch.device, precision: str) -> dict[str, Any]:
    """Lightning Fabric's arguments for one device: ``cuda:N`` is GPU N (``devices=1`` would be GPU 0)."""
    if device.type == "cuda":
        return {"accelerator": "cuda", "devices": [device.index or 0], "precision": precision}
    return {"accelerator": "cpu", "devices": 1, "precision": precision}


def progress_refresh_rate(steps: int, log_every: int, tty: bool | None = None) -> int:
    """Steps between progress-bar updates: frequent on a terminal; about 20 in all when stderr is a log
    file (a batch job), where every update is one more carriage-return line."""
    tty = sys.stderr.isatty() if tty is None else tty
    return max(1, min(log_every, 25)) if tty else max(25, steps // 20)


_INT = re.compile(r"^-?\d+$")


def read_rows(path: Path, before: int) -> list[dict]:
    """Logged rows of a CSV with ``step`` < ``before`` (a torn last line, from a kill, is dropped), values
    typed back as they were logged."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            try:
                step = int(r["step"])
                row = {k: (int(v) if _INT.match(v) else float(v)) for k, v in r.items() if k and v not in ("", None)}
            except (KeyError, TypeError, ValueError):
                continue
            if step < before:
                rows.append(row)
    return rows


__all__ = ["Session", "Tracker", "fabric_args", "progress_refresh_rate", "read_rows"]
