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


def priority_for(ordering, channels: int, seed: int = 0):
    """Channel priorities for the CHANNEL_WEIGHTED order (None for the others): random, a few
    octaves apart, so they do reorder planes."""
    from edge_sdk.runtime import Ordering

    if ordering != Ordering.CHANNEL_WEIGHTED:
        return None
    return np.random.default_rng(seed).integers(-2048, 2049, channels)


def prior_of(means, kidx):
    return lambda _z, _header: (means, kidx)


class HTTPServerProcess:
    """A real HTTP server process on 127.0.0.1 (``tests/runtime/http_servers.py``): ``kind`` "static"
    (uvicorn + Starlette StaticFiles) or "faults"; ``url`` is its base address. Use as a context
    manager, or call ``stop()``; a server that does not report its port within 30 s fails the test."""

    def __init__(self, kind: str, root: Path):
        import select
        import subprocess
        import sys

        script = Path(__file__).resolve().parent / "runtime" / "http_servers.py"
        self.process = subprocess.Popen([sys.executable, str(script), kind, str(root)], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        ready, _, _ = select.select([self.process.stdout], [], [], 30.0)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the {kind} HTTP server did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{line}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait(10)
        self.process.stdout.close()

    def __enter__(self) -> "HTTPServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def random_controller(seed: int = 0):
    """A controller with random weights: its probabilities vary from level to level, which is all
    the tests of where decoding stops need (the tiny bundle ships none)."""
    from edge_sdk.runtime.controller import FEATURE_NAMES, Controller

    n = len(FEATURE_NAMES)
    rng = np.random.default_rng(seed)
    return Controller(FEATURE_NAMES, np.full(n, -1e9), np.full(n, 1e9), np.zeros(n), np.ones(n), rng.normal(size=n),
                      0.0, {"fitted": "random weights, for tests"})
