"""The ``edge-sdk`` command line: the app from :mod:`edge_sdk.cli.common` with every command group on it.

Each module registers its commands when imported: :mod:`.stream` (inspect, truncate),
:mod:`.models` (models, export), :mod:`.run` (encode, decode, run, samples), :mod:`.serve`,
:mod:`.doctor` (version, doctor), :mod:`.calibrate`, :mod:`.evaluate` (eval),
:mod:`.engines` (build, verify), :mod:`.clib` (c-lib) and :mod:`.training` (the ``data`` and ``train`` groups).
"""

from edge_sdk.cli.common import app, data_app, train_app

# importing a module registers its commands; this order is the order `edge-sdk --help` lists them in
from edge_sdk.cli import stream, models, doctor, run, serve, calibrate, evaluate, engines, clib, training  # noqa: E402,F401

app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")

__all__ = ["app", "main"]


def _exit_on_sigterm(signum, frame) -> None:
    # Python's default SIGTERM ends the process where it stands; raising instead unwinds the
    # stack, so every atomic write in progress removes its temporary (runtime/fileio.py)
    raise SystemExit(128 + signum)


def main() -> None:
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app()
