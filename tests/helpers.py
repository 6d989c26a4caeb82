"""Helpers shared by test modules (plain functions and constants; fixtures live in conftest.py).

Import them as ``from helpers import make_latent``: pytest puts ``tests/`` on ``sys.path``.
"""

from pathlib import Path

import numpy as np

from edge_sdk.runtime.tables import scale_to_index

Z_CHANNELS = 4

#: image sizes the real-model export fixture traces and verifies (small, to keep it quick)
SMALL_SIZES = ((64, 64), (128, 192))

#: the committed bundle of the ``tiny_test`` model (tests/data/README.md regenerates it)
TINY_BUNDLE = Path(__file__).resolve().parent / "data" / "tiny_bundle"
TINY_MODEL = "tiny_test"


def make_latent(tables, shape=(8, 6, 6), seed=0, sigma_range=(0.1, 50.0), z_shape=(Z_CHANNELS, 2, 2)):
    """A Gaussian latent whose residuals follow the coded scales."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(sigma_range[0]), np.log(sigma_range[1]), shape))
    means = rng.normal(0.0, 2.0, shape).astype(np.float32)
    y = (means + rng.normal(0.0, 1.0, shape) * sigma).astype(np.float32)
    kidx = scale_to_index(sigma, tables.trit.scales)
    z = rng.integers(-6, 7, z_shape)
    return y, means, kidx, z


def prior_of(means, kidx):
    return lambda _z, _header: (means, kidx)
