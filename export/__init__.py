"""edge-sdk export side (torch models, checkpoint loading, ONNX export, engine build).

Nothing is here yet: model definitions and ``edge-sdk export`` arrive with issue 3.
"""
