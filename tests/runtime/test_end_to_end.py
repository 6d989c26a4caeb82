"""Photo → stream → every level → classes and pixels with the committed bundle, torch unimportable.

What a deployment without torch (a Jetson with ONNX Runtime) runs: the public ``edge_sdk`` API,
``edge_sdk.runtime`` and a bundle on disk. The child process blocks ``import torch`` before
anything else, so a torch import anywhere on this path fails the test instead of passing quietly.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from helpers import TINY_BUNDLE

CHILD = textwrap.dedent("""
    import sys
    for name in ("torch", "torchvision", "timm"):
        sys.modules[name] = None  # import torch now raises ImportError
    import json
    import numpy as np
    from PIL import Image
    from edge_sdk import DEEPEST, Bundle, Decoder, Encoder, level_boundaries, open_backend

    bundle_dir, photo = sys.argv[1], sys.argv[2]
    with open_backend("ort:cpu", threads=1) as backend:
        bundle = Bundle.load(bundle_dir)
        data = Encoder(bundle, backend).encode(photo)
        decoder = Decoder(bundle, backend)
        ends = level_boundaries(data)
        levels = []
        for level in range(len(ends)):
            pred = decoder.classify(data, level=level)
            image = decoder.reconstruct(data, level=level)
            levels.append({"level": pred.level, "bytes_used": pred.bytes_used, "bytes_total": pred.bytes_total,
                           "top_k": [[c.index, c.name, c.probability] for c in pred.top_k],
                           "shape": list(image.shape), "dtype": str(image.dtype)})
        final = decoder.reconstruct(data, level=DEEPEST)
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.float64)
    print(json.dumps({"ends": ends, "levels": levels, "torch_loaded": "torch" in sys.modules and sys.modules["torch"] is not None,
                      "classes": bundle.class_names, "mse": float(((final - original) ** 2).mean())}))
""")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photo") / "coffee.png"
    Image.fromarray(data.coffee()[:150, :200]).save(path)
    return path


def test_encode_decode_classify_reconstruct_without_torch(photo):
    run = subprocess.run([sys.executable, "-c", CHILD, str(TINY_BUNDLE), str(photo)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert not result["torch_loaded"]
    ends, levels = result["ends"], result["levels"]
    assert len(ends) >= 2 and ends == sorted(ends) and len(levels) == len(ends)
    for level, row in enumerate(levels):
        assert row["level"] == level and row["bytes_used"] == ends[level] and row["bytes_total"] == ends[-1]
        assert row["shape"] == [150, 200, 3] and row["dtype"] == "uint8"
        probs = [p for _, _, p in row["top_k"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(result["classes"][i] == name for i, name, _ in row["top_k"])
    assert np.isfinite(result["mse"])
