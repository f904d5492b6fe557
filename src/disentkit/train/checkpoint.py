"""Checkpoints that load without executing code: safetensors weights + the full config as metadata, and
the complete training state a run resumes from.

A disentkit checkpoint is one ``.safetensors`` file whose metadata holds ``format`` and the run's
``config`` (every hyperparameter) as JSON. The training state (``training_state.pt``: every member's and
objective's tensors, every optimizer's state, every random generator's state, the step, the best
validation loss) is written with ``torch.save`` and read with ``torch.load(weights_only=True)``, which
refuses pickles that would run code; so are Lightning ``.ckpt`` files. Every file is written atomically.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..errors import DisentkitError
from ..files import atomic_file
from ..models import GaussianVAE

FORMAT = "disentkit-checkpoint-v1"
STATE_FORMAT = "disentkit-training-state-v1"
STATE_FILE = "training_state.pt"


@dataclass
class Checkpoint:
    """A loaded model: its config (as saved), the VAE with weights, and the raw state.

    Example:

        >>> import tempfile
        >>> from disentkit.train import TrainConfig, fit, load_checkpoint
        >>> run = fit(TrainConfig(steps=2, batch_size=8, out=tempfile.mkdtemp() + "/run", progress=False))
        trained beta_vae for 2 steps...
        >>> ck = load_checkpoint(run)
        >>> ck.path.name, ck.config["model"], ck.vae.latent_dim, sorted(ck.state)[0]
        ('model.safetensors', 'beta_vae', 10, 'vae.decoder.deconv.0.bias')
    """

    path: Path
    config: dict[str, Any]
    vae: GaussianVAE
    state: dict[str, torch.Tensor]
    meta: dict[str, str]


def save_checkpoint(path: str | Path, state: dict[str, torch.Tensor], config: dict[str, Any],
                    **meta: Any) -> Path:
    """Write ``state`` (tensors), ``config`` and ``meta`` (JSON values) as a safetensors checkpoint, atomically
    (``.part`` then rename) so an interrupted save never clobbers a good file.

    Example (a copy of a run's checkpoint, marked as such):

        >>> import tempfile
        >>> from disentkit.train import TrainConfig, fit, load_checkpoint, save_checkpoint
        >>> run = fit(TrainConfig(steps=2, batch_size=8, out=tempfile.mkdtemp() + "/run", progress=False))
        trained beta_vae for 2 steps...
        >>> ck = load_checkpoint(run)
        >>> path = save_checkpoint(run / "copy.safetensors", ck.state, ck.config, note="a copy")
        >>> load_checkpoint(path).meta["note"]
        '"a copy"'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    metadata = {"format": FORMAT, "config": json.dumps(config)}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its best checkpoint if it has one, else its final one."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.safetensors", "model.safetensors", "last.safetensors"):
            if (p / name).is_file():
                return p / name
        raise DisentkitError(f"no checkpoint in {p}: expected best.safetensors or model.safetensors "
                             "(is this a finished `disentkit train` run folder?)")
    if not p.is_file():
        raise DisentkitError(f"checkpoint not found: {p}")
    return p


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, str]]:
    """State dict, config and metadata of a checkpoint file, never unpickling arbitrary objects."""
    p = resolve_checkpoint(path)
    if p.suffix == ".ckpt":
        try:
            raw = torch.load(p, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as e:
            raise DisentkitError(f"refused to load {p}: it is not a plain weights file (loading it would run "
                                 f"code or it is corrupt): {str(e).splitlines()[0]}") from None
        if not isinstance(raw, dict) or "config" not in raw or "state_dict" not in raw:
            raise DisentkitError(f"{p} is not a disentkit checkpoint (no 'config' and 'state_dict')")
        return raw["state_dict"], raw["config"], {}
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise DisentkitError(f"{p} is not a readable safetensors checkpoint ({e}); "
                             "pass a file written by `disentkit train`") from None
    if meta.get("format") != FORMAT:
        raise DisentkitError(f"{p} is a safetensors file but not a disentkit checkpoint (no '{FORMAT}' metadata)")
    try:
        config = json.loads(meta.get("config", ""))
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise DisentkitError(f"{p}: its 'config' metadata is not a JSON mapping; the file is damaged or not "
                             "written by disentkit (train again, or use another checkpoint)")
    return state, config, meta


def check_config(config: dict[str, Any], path: Path) -> None:
    """The keys a checkpoint's VAE is built from, checked against their types and ranges before anything
    is built (so that metadata cannot ask for an arbitrary allocation)."""
    from ..models import ARCHITECTURES
    from ..models.custom import is_custom
    from .config import MAX_LATENT_DIM

    def bad(what: str) -> DisentkitError:
        return DisentkitError(f"{path}: its config metadata {what}; the file is damaged or not written by this "
                              "disentkit (train again, or use another checkpoint)")

    dim, channels, arch = config.get("latent_dim"), config.get("channels", 1), config.get("architecture", "locatello")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= MAX_LATENT_DIM:
        raise bad(f"has latent_dim {dim!r} (an integer in 1..{MAX_LATENT_DIM} expected)")
    if channels is not None and (not isinstance(channels, int) or isinstance(channels, bool) or not 0 < channels <= 16):
        raise bad(f"has channels {channels!r} (1 for grey, 3 for colour)")
    if not isinstance(arch, str) or not (arch in ARCHITECTURES or is_custom(arch)):
        raise bad(f"names an unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    if not isinstance(config.get("model"), str):
        raise bad(f"has no model name (model: {config.get('model')!r})")


def check_shapes(vae_state: dict[str, torch.Tensor], config: dict[str, Any], path: Path) -> None:
    """The file's tensors against the shapes of the VAE its config describes, built on the meta device
    (no memory): a latent_dim that disagrees with the weights is named before any model is allocated."""
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in build_vae(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in vae_state.items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    wrong = [k for k in want.keys() & got.keys() if want[k] != got[k]]
    if missing or extra or wrong:
        detail = (f"{wrong[0]} is {list(got[wrong[0]])} in the file, {list(want[wrong[0]])} for latent_dim "
                  f"{config['latent_dim']}" if wrong else f"missing {missing[:2]}" if missing else f"unexpected {extra[:2]}")
        raise DisentkitError(f"{path}: weights do not match the model its config describes ({detail}); the file "
                             "is damaged or its metadata was edited")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", vae: torch.nn.Module | None = None
                    ) -> Checkpoint:
    """Rebuild the VAE a checkpoint was trained with and load its weights (strictly). A run of a user's VAE
    (``fit(config, vae=...)``) loads into ``vae``, a fresh instance of its class.

    Example:

        >>> import tempfile
        >>> from disentkit.train import TrainConfig, fit, load_checkpoint
        >>> run = fit(TrainConfig(steps=2, batch_size=8, latent_dim=6, out=tempfile.mkdtemp() + "/r", progress=False))
        trained beta_vae for 2 steps...
        >>> ck = load_checkpoint(run)              # the folder: best.safetensors, else model.safetensors
        >>> ck.vae.latent_dim, ck.vae.training, ck.meta["step"]
        (6, False, '2')
    """
    from ..models.custom import as_vae

    p = resolve_checkpoint(path)
    state, config, meta = read_checkpoint(p)
    check_config(config, p)
    vae_state = {k[len("vae."):]: v for k, v in state.items() if k.startswith("vae.")}
    if vae is None:
        check_shapes(vae_state, config, p)
    vae = build_vae(config) if vae is None else as_vae(vae, int(config["latent_dim"]))
    try:
        vae.load_state_dict(vae_state)
    except RuntimeError as e:
        raise DisentkitError(f"{p}: weights do not match the model its config describes: "
                             f"{str(e).splitlines()[0]}") from None
    return Checkpoint(p, config, vae.to(device).eval(), state, meta)


def build_vae(config: dict[str, Any]) -> GaussianVAE:
    """The VAE described by a saved config (``channels`` is recorded from the dataset at training)."""
    from .members import build_vae as build

    return build(config)


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a training state atomically (``.part``, flushed to disk, then renamed): a kill at any moment
    leaves the previous state or this one, never a torn file."""
    with atomic_file(path, "wb") as f:
        torch.save({"format": STATE_FORMAT, **state}, f)
    return Path(path)


def load_state(path: str | Path) -> dict[str, Any]:
    """A training state written by :func:`save_state`, loaded without executing code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise DisentkitError(f"{path} is not a readable training state ({str(e).splitlines()[0]}); start the "
                             "run again with --overwrite") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DisentkitError(f"{path} is not a disentkit training state")
    return state
