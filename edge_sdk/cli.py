"""The ``edge-sdk`` command line (typer)."""
