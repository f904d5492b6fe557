"""The training loop: Lightning Fabric for the device, precision and loggers; everything else explicit.

``train(config, members, run_dir)`` trains 1..M members (a single run is the engine with one member)::

    for step in range(done, total):
        logs = step_fn(batches.next(), members.draw_noise(batch_size))
        write logs every --log-every steps; validate (best checkpoint, early stopping) every --val-every;
        metrics every --eval-every; the complete training state every --checkpoint-every
    final weights, test losses of the best checkpoint, the last line: losses, active latents, next command

No Lightning Trainer or module: the step is ``train/step.py``'s, the models ``train/members.py``'s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import TrainingDiverged
from ..models import GaussianVAE
from .checkpoint import STATE_FILE, save_state
from .config import TrainConfig
from .session import Session
from .status import mark_finished
from .step import active_latents


Callback = Callable[[int, dict], None]


def train(config: TrainConfig, members: list[TrainConfig], run_dir: Path, resume: bool = False,
          callbacks: Sequence[Callback] = (), vae: GaussianVAE | None = None) -> Path:
    """Train ``members`` (validated single-run configs; one, or a fused ensemble's) sharing ``config``'s
    steps, batch, device and speed options, in ``run_dir``; continue from its training state if ``resume``.
    Each of ``callbacks`` is called as ``fn(step, logs)`` after every step (logs: the step's device tensors)."""
    s = Session.open(config, members, run_dir, resume, vae=vae)
    t0 = time.time()
    with s.deterministic():
        with s.progress_bar() as bar:
            for i in range(s.done, s.total):
                logs = s.step(s.batches.next(), s.members.draw_noise(config.batch_size))
                s.done = i + 1
                if syncs_after(s, s.done):   # the loop reads the device here anyway: NaN/inf stops a member
                    s.check_finite(weights=s.done == s.total)
                    if s.all_stopped():
                        break
                if s.done % config.log_every == 0 or s.done == s.total:
                    s.last_logs = s.write_logs(i, logs)
                    bar.set_postfix_str(s.postfix(), refresh=False)
                if s.val_every and s.done % s.val_every == 0:
                    s.validate(i)
                if config.eval_every and s.done % config.eval_every == 0:
                    s.log_metrics(i)
                if config.image_every and s.done % config.image_every == 0 and s.done < s.total:
                    s.log_images(i)
                if s.done % s.checkpoint_every == 0 and s.done < s.total:
                    s.checkpoint()
                bar.update(1)
                for fn in callbacks:
                    fn(i, logs)
                if s.all_stopped():
                    break
        finish(s, time.time() - t0)
    return run_dir


def syncs_after(s: Session, done: int) -> bool:
    """Whether the loop reads the device after step ``done`` (logs, validation, metrics, images, checkpoint,
    the end): where the non-finite guard is read, so that it costs no sync of its own."""
    c = s.config
    return (done % c.log_every == 0 or done == s.total or bool(s.val_every and done % s.val_every == 0)
            or bool(c.eval_every and done % c.eval_every == 0) or bool(c.image_every and done % c.image_every == 0)
            or done % s.checkpoint_every == 0)


def finish(s: Session, seconds: float) -> None:
    """Final weights of every member still training, test losses, then the final training state (last: a run
    killed before it is resumed from its last checkpoint and redoes all of this), and the last line. A member
    that diverged keeps what :meth:`Session.check_finite` kept; if every member did, the training state stays
    at the last finite checkpoint. Ends with :class:`TrainingDiverged` naming each that diverged."""
    for i, cfg in enumerate(s.cfgs):
        if not s.trackers[i].stopped:
            s.save_member(i, "model.safetensors")
        (Path(cfg["out"]) / "last.safetensors").unlink(missing_ok=True)
    live = [t.diverged_at is None for t in s.trackers]
    tests = s.test_losses()
    s.log_images(s.done - 1, final=True)
    s.log_hparams()
    s.flush_logs()
    for lg, ok in zip(s.loggers, live):
        for one in lg:
            one.finalize("success" if ok else "failed")
    if any(live):
        save_state(s.run_dir / STATE_FILE, s.state())
        for cfg, ok in zip(s.cfgs, live):
            if ok:
                mark_finished(cfg["out"], s.done)
        if len(s.cfgs) > 1:
            mark_finished(s.run_dir, s.done)
    print_summary(s, seconds, tests)
    if s.divergences:
        raise TrainingDiverged(" | ".join(s.divergences))


def print_summary(s: Session, seconds: float, tests: list[dict | None]) -> None:
    """One line per member: final losses, active latents (batch KL > 0.01 nats), and what to run next."""
    rate = (s.done - s.started_at) / max(seconds, 1e-9)
    head = f"trained {s.config.model} for {s.done} steps in {seconds:.0f}s ({rate:.1f} steps/s)"
    if all(t.diverged_at for t in s.trackers):
        return   # nothing trained to the end: the error line says what happened
    print(head + (f", {len(s.cfgs)} members" if len(s.cfgs) > 1 else ""), flush=True)
    for i, cfg in enumerate(s.cfgs):
        if s.trackers[i].diverged_at:
            print(f"{cfg['out']}: diverged at step {s.trackers[i].diverged_at} (see its diverged.json)", flush=True)
            continue
        logs = s.last_logs[i] if s.last_logs else {}
        terms = ", ".join(f"{k} {logs[k]:.2f}" for k in ("loss", "reconstruction", "kl") if k in logs)
        active, dims = active_latents(logs)
        test = f"; test loss {tests[i]['loss']:.2f}" if tests[i] else ""
        stop = f"; stopped early at step {s.trackers[i].stopped_at}" if s.trackers[i].stopped else ""
        print(f"{cfg['out']}: {terms}; {active}/{dims} active latents (KL > 0.01 nats){test}{stop}; "
              f"evaluate: disentkit evaluate --checkpoint {cfg['out']}", flush=True)


def bare_steps(s: Session, n: int) -> float:
    """Seconds per step of ``n`` steps through the step alone (batches, noise, step; no bookkeeping):
    the reference the loop's own cost is measured against (benchmarks/bench_loop.py)."""
    sync = torch.cuda.synchronize if s.members.device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(n):
        s.step(s.batches.next(), s.members.draw_noise(s.config.batch_size))
    sync()
    return (time.perf_counter() - t) / n


__all__ = ["bare_steps", "train"]
