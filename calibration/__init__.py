"""edge-sdk calibration: what is fitted or measured by running a bundle over photos.

* ``controller``: the adaptive decoding controller — Algorithm 1's data collection through
  the real Encoder/Decoder (``collect``), the logistic-regression fit (``fit``, scikit-learn),
  its measures (``metrics``: ECE, Algorithm 2 on collected samples) and the JSON/PNG report of
  ``edge-sdk calibrate`` (``report``). The runtime side is ``edge_sdk.runtime.controller`` (NumPy).
* ``evaluation``: ``edge-sdk eval``'s rate–accuracy curves of the whole pipeline against JPEG,
  WebP and the non-progressive codec (``evaluate``).
* ``int8`` / ``verify``: TensorRT INT8 calibration images and the engine-against-ONNX check.
* ``photos`` (which files, at what scale) and ``bdrate`` are shared by the above.

Everything here builds on ``edge_sdk.runtime`` only, never on the API package or the CLI.
"""

__all__: list[str] = []
