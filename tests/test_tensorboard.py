"""TensorBoard shows the run: the per-latent KL in one chart, images, and hparams with losses and metrics
(read back with TensorBoard's own event reader)."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from disentkit.evaluate import evaluate_checkpoint
from disentkit.train import TrainConfig, fit


def _events(run):
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def _sessions(acc):
    """The hparams of the run's HParams session, and whether an experiment summary was written."""
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = {k: v.ListFields()[0][1] for k, v in start.session_start_info.hparams.items()}
    return hp, "_hparams_/experiment" in content


def test_images_layout_and_hparams_in_the_event_files(tmp_path):
    run = fit(TrainConfig(steps=20, batch_size=16, out=str(tmp_path / "r"), log_every=5, image_every=10,
                          threads=1, progress=False, seed=2, hparams={"beta": 3.0}))
    acc = _events(run)
    assert {"images/reconstructions", "images/traversals"} <= set(acc.Tags()["images"])
    steps = [e.step for e in acc.Images("images/traversals")]
    assert steps == [9, 19]  # every --image-every steps, and at the end
    trav = acc.Images("images/traversals")[-1]
    assert trav.height > trav.width  # one row per latent (10), 8 columns
    assert "train/kl_dim/0" in acc.Tags()["scalars"]
    assert "custom_scalars__config__" in acc.Tags()["tensors"]  # the multi-line KL chart
    hp, experiment = _sessions(acc)
    assert hp["model"] == "beta_vae" and hp["hparams.beta"] == 3.0 and hp["seed"] == 2
    assert not experiment  # so the HParams tab takes every scalar of the folder (losses, eval/*) as a metric

    evaluate_checkpoint(run, "mig", params={"mig": {"num_train": 300}})
    acc = _events(run)
    assert [e.step for e in acc.Scalars("eval/mig")] == [20] and "train/loss" in acc.Tags()["scalars"]
    assert _sessions(acc) == (hp, False)
