"""edge-sdk calibration: the adaptive decoding controller's fitting and its report.

``collect`` runs Algorithm 1's data collection through the real Encoder/Decoder,
``fit`` fits the logistic-regression filter with scikit-learn, ``metrics`` holds ECE,
Algorithm 2 on collected samples and BD-rate, ``report`` the JSON and PNGs of
``edge-sdk calibrate``. The runtime side is ``edge_sdk.runtime.controller`` (NumPy).
INT8 calibration data for TensorRT (issue 8) is not here yet.
"""
