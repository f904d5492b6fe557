"""The device data path: the fast bit unpacking and dataset placement."""

import torch

from disentkit.data import get_dataset
from disentkit.data.dsprites_procedural import pack_bits, unpack_bits, unpack_bits_float


def test_float_unpack_equals_unpack_bits():
    bits = torch.rand(5, 64, 64) > 0.5
    packed = pack_bits(bits)
    assert torch.equal(unpack_bits_float(packed), unpack_bits(packed).float())
    assert torch.equal(unpack_bits_float(packed).bool(), bits)


def test_gather_from_packed_equals_rendering():
    ds = get_dataset("dsprites_procedural")
    idx = torch.tensor([0, 17, 5000, 737279])
    rendered = ds.images_at(idx)
    ds.packed = torch.zeros(ds.num_images, 64, 8, dtype=torch.uint8)
    ds.packed[idx] = pack_bits(rendered[:, 0].bool())
    assert torch.equal(ds.images_at(idx), rendered)


def test_place_keeps_host_data_on_cpu():
    ds = get_dataset("dsprites_procedural")
    assert ds.place(torch.device("cpu"), free_bytes=1 << 40) is False and ds.packed is None


def test_sync_free_rendering_draws_the_same_images():
    """Off a CPU the renderer tests every shape on every window (no data-dependent indexing, no device sync)."""
    from disentkit.data.dsprites_procedural import render

    ds = get_dataset("dsprites_procedural")
    f = ds.index_to_factors(torch.randint(0, ds.num_images, (3000,), generator=torch.Generator().manual_seed(0)))
    vals = [v[f[:, i]].float() for i, v in enumerate(ds._values)]
    assert torch.equal(render(f[:, 0], *vals[1:], sync_free=True), render(f[:, 0], *vals[1:], sync_free=False))
