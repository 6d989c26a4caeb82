"""INT8 calibration data: the inputs each quantized graph really sees, from real photos.

The pixel graphs see images; the classifier and the synthesis see ŷ, and in a progressive
decoder ŷ is the latent at *every* depth, from the prior's means (level 0) to the exact
latent, so the calibration set spans decoded depths too. Every input has the profile's
optimal shape: TensorRT 10's calibrator runs at the calibration profile's shape, and ONNX
Runtime's quantizer does not care.

The result is what ``edge_sdk.runtime.backends.tensorrt.build_engines(..., calibration=...)``
takes: the runtime's engine builder never reads photos itself.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from edge_sdk.runtime import level_boundaries
from edge_sdk.runtime.backends import Backend, open_backend
from edge_sdk.runtime.backends.tensorrt import precision_plan
from edge_sdk.runtime.bundle import Bundle
from edge_sdk.runtime.images import pad_image, read_image, to_uint8
from edge_sdk.runtime.pipeline import Decoder, Encoder

#: decoded-depth fractions whose ŷ calibrate the classifier and the synthesis
DEPTHS = (0.0, 0.25, 0.5, 1.0)


def fit_to(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (Lanczos) to cover ``height`` × ``width``, then centre-crop to it exactly."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    arr = np.asarray(Image.fromarray(to_uint8(rgb)).resize(size, Image.LANCZOS))
    top, left = (arr.shape[0] - height) // 2, (arr.shape[1] - width) // 2
    return np.ascontiguousarray(arr[top: top + height, left: left + width])


#: the graphs that take ŷ: calibrated on latents decoded to several depths
LATENT_GRAPHS = ("classifier", "synthesis", "classifier_trunk")


def int8_calibration_feeds(bundle: Bundle, photos: Sequence[np.ndarray], size: tuple[int, int],
                           graphs: Optional[Sequence[str]] = None, backend: Optional[Backend] = None,
                           depths: Sequence[float] = DEPTHS) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per graph of ``graphs`` that an INT8 build quantizes (the hyperprior side stays FP32), a
    list of feeds (input name → float32 array) at ``size`` (the profile's optimal (H, W));
    ``graphs`` defaults to all of the bundle's."""
    graphs = [g for g, p in precision_plan("int8", tuple(bundle.graphs if graphs is None else graphs)).items()
              if p == "int8"]
    height, width = size
    if height % bundle.padding_multiple or width % bundle.padding_multiple:
        raise ValueError(f"calibration size {height}x{width} must be a multiple of {bundle.padding_multiple}")
    if not photos:
        raise ValueError("INT8 calibration needs photos")
    backend = backend or open_backend("ort:cpu")
    encoder, decoder = Encoder(bundle, backend), Decoder(bundle, backend)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {g: [] for g in graphs}
    for photo in photos:
        rgb = fit_to(np.asarray(photo), height, width)
        image, _ = pad_image(read_image(rgb), bundle.padding_multiple, bundle.min_size)  # (1, 3, H, W) float32
        for g in graphs:
            if g in ("analysis", "pixel_classifier"):
                feeds[g].append({bundle.graphs[g].inputs[0].name: image})
        if not any(g in LATENT_GRAPHS for g in graphs):
            continue
        data = encoder.encode(rgb)
        ends = level_boundaries(data)
        session = decoder.session()
        fed = 0
        for depth in depths:
            end = ends[round(depth * (len(ends) - 1))]
            session.feed(data[fed:end])
            fed = max(fed, end)
            y_hat = session.latent()[None]
            for g in LATENT_GRAPHS:
                if g in graphs:
                    feeds[g].append({bundle.graphs[g].inputs[0].name: y_hat})
    return feeds
