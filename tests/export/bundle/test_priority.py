"""Channel priorities of the channel-weighted symbol order (export/bundle/priority.py)."""

import numpy as np
import pytest
import torch

from edge_sdk.export.bundle.priority import PRIORITY_QUANTUM, channel_gains, priorities_from_gains
from edge_sdk.runtime import Ordering
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.codec import MAX_CHANNEL_PRIORITY, read_header


def test_priorities_are_log2_gains_about_their_geometric_mean():
    assert priorities_from_gains(np.ones(5)) == [0] * 5
    # gains 1, 4, 16, 1: log2 0, 2, 4, 0 about a mean of 1.5 octaves, 512 units per octave
    assert priorities_from_gains(np.array([1.0, 4.0, 16.0, 1.0])) == [-768, 256, 1280, -768]
    assert all(v % PRIORITY_QUANTUM == 0 for v in priorities_from_gains(np.array([1.0, 1.3, 2.9])))
    wide = priorities_from_gains(np.array([1e-12, 1.0, 1e12]))
    assert wide[0] == -MAX_CHANNEL_PRIORITY and wide[2] == MAX_CHANNEL_PRIORITY
    for bad in (np.array([1.0, 0.0]), np.array([1.0, np.nan]), np.array([]), np.ones((2, 2))):
        with pytest.raises(ValueError, match="positive"):
            priorities_from_gains(bad)


def test_gains_of_a_linear_synthesis_are_its_squared_weights():
    weights = torch.tensor([1.0, 2.0, 4.0, 1.0])

    def synthesis(y):  # every colour plane is the weighted sum of the channels
        return (y * weights[None, :, None, None]).sum(dim=1, keepdim=True).repeat(1, 3, 1, 1)

    y_hat = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    gains = channel_gains(synthesis, [y_hat])
    np.testing.assert_allclose(gains / gains[0], (weights**2 / weights[0] ** 2).numpy(), rtol=0.08)
    assert priorities_from_gains(gains) == [-768, 256, 1280, -768]


def test_the_test_bundle_carries_priorities_and_its_streams_use_them(tiny_bundle):
    from edge_sdk.runtime.backends import open_backend
    from edge_sdk.runtime.pipeline import Decoder, Encoder

    backend = open_backend("ort:cpu", threads=1)
    bundle = Bundle.load(tiny_bundle)
    assert bundle.channel_priority is not None and bundle.channel_priority.size == bundle.latent_channels
    photo = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    data = Encoder(bundle, backend).encode(photo)
    assert read_header(data).ordering == Ordering.CHANNEL_WEIGHTED
    assert Decoder(bundle, backend).classify(data).level > 0
    plain = Encoder(bundle, backend, ordering=Ordering.EXPECTED_VARIANCE).encode(photo)
    assert read_header(plain).ordering == Ordering.EXPECTED_VARIANCE
