"""The device data path: the fast bit unpacking and dataset placement."""

import torch

from disentkit.data import get_dataset
from disentkit.data.dsprites_procedural import pack_bits, unpack_bits, unpack_bits_float
from disentkit.train.run import place_dataset


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


def test_place_dataset_keeps_host_data_on_cpu():
    ds = get_dataset("dsprites_procedural")
    assert place_dataset(ds, torch.device("cpu")) is ds and ds.packed is None
