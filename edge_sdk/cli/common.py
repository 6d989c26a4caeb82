"""What every ``edge-sdk`` command shares: the Typer apps, the consoles, failing with a
message, opening streams, bundles and backends, label files, the progress bar and the
``--device``/``--threads`` options.

Command modules import from here and never from each other. Lower layers (the runtime
backends, Pillow, torch) are imported inside the functions that need them, so that
``edge-sdk --help`` starts fast.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from edge_sdk.runtime import BitstreamError, BundleError, read_header
from edge_sdk.runtime.images import DEFAULT_MAX_PIXELS

app = typer.Typer(
    name="edge-sdk",
    help="Progressive, machine-oriented learned image compression for edge GPUs.\n\n"
    "A stream is one progressive bitstream per image: a header, the z section, then "
    "chunks; any prefix that ends on a chunk boundary decodes to a level.",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Training and held-out photo sets from local files (never the network).",
                       no_args_is_help=True)
train_app = typer.Typer(help="Train a registered model's codec, prior or adapter (resumable).", no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)

# The options that choose where models run, one default each. Commands that run a bundle use
# ONNX Runtime (or TensorRT engines); the training commands use torch.
DEVICE_OPTION = typer.Option("auto", help="auto, cpu or cuda (ONNX Runtime). auto: CUDA when onnxruntime-gpu "
                             "and a GPU are present, else the CPU.")
THREADS_OPTION = typer.Option(0, help="CPU threads (0: all cores).")
MAX_PIXELS_OPTION = typer.Option(
    DEFAULT_MAX_PIXELS, "--max-pixels", min=1 << 16,
    help="Largest padded image to encode or decode (default 64 Mi pixels, the same for both, so every stream an "
         "encoder makes decodes). Larger ones are refused before anything is allocated; analysis and synthesis run "
         "in overlapping tiles, so memory grows with the image only through the latent and the classifier.")
TORCH_DEVICE_OPTION = typer.Option("auto", help="auto, cpu or cuda.")
MAX_MEMORY_OPTION = typer.Option(
    "auto", "--max-memory", metavar="SIZE",
    help="Memory one item may plan to use, such as 1.5G or 800M ('auto': half the machine's memory; 'none': no "
         "limit). Each item's peak is predicted from the bundle's measured memory line (`edge-sdk inspect BUNDLE`) "
         "before its pixels are read; an item over the limit is reported and skipped, the batch goes on.")
TORCH_THREADS_OPTION = typer.Option(0, help="torch CPU threads (0: torch's default).")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: MESSAGE`` on stderr and exit with ``code``."""
    from rich.markup import escape

    # escape: messages quote things like 'edge-sdk[trt]' that rich would take for markup
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def read_stream(path: Path) -> bytes:
    """The file's bytes once its header has been checked; a clear exit otherwise."""
    if not path.is_file():  # a folder, a device such as /dev/zero, a FIFO: never read to the end
        fail(f"{path} is not a stream file" if path.exists() else f"{path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    try:
        read_header(data)
    except BitstreamError as exc:
        fail(f"{path}: {exc}")
    return data


def open_bundle(path: Path):
    """The verified bundle in ``path``; a clear exit otherwise."""
    from edge_sdk.runtime.bundle import Bundle

    try:
        return Bundle.load(path)
    except BundleError as exc:
        fail(str(exc))


def backend_from_options(bundle, device: str = "auto", threads: int = 0, engine: Optional[Path] = None, *,
                         rebuild: bool = True, graph_files: Optional[dict[str, Path]] = None):
    """The backend a command's ``--device``, ``--threads`` and ``--engine`` ask for; every command opens one here.

    With ``engine``, the TensorRT engines in that folder (from ``edge-sdk build``; stale ones
    are rebuilt unless ``rebuild`` is false); with ``graph_files``, ONNX Runtime running those
    ONNX files in place of the bundle's graphs; otherwise ONNX Runtime on ``device``.
    ``threads`` 0 leaves the choice to the backend.
    """
    from edge_sdk.runtime.backends import open_backend
    from edge_sdk.runtime.errors import BackendError

    try:
        if engine is not None:
            return open_backend(f"trt:{engine}", bundle=bundle, rebuild=rebuild)
        spec = "auto" if device == "auto" else f"ort:{device}"
        return open_backend(spec, threads=threads, graph_files=graph_files)
    except BackendError as exc:
        fail(str(exc))


def read_labels(path: Path, class_names: list[str]) -> dict[str, int]:
    """CSV rows ``file,label``: the label is a class index or a class name of the bundle."""
    index = {n: i for i, n in enumerate(class_names)}
    labels = {}
    try:
        rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read labels {path}: {exc}")
    for n, row in enumerate(rows, 1):
        if not row or row[0].startswith("#") or (n == 1 and row[0].lower() in ("file", "image", "name")):
            continue
        if len(row) < 2:
            fail(f"{path}:{n}: expected 'file,label'")
        name, label = row[0].strip(), row[1].strip()
        if label.isdigit() and int(label) < len(class_names):
            labels[Path(name).name] = int(label)
        elif label in index:
            labels[Path(name).name] = index[label]
        else:
            fail(f"{path}:{n}: label {label!r} is neither a class index nor a class name of this bundle")
    return labels


class _Count(MofNCompleteColumn):
    """``done/total``, or nothing for a task of unknown length."""

    def render(self, task) -> Text:
        return Text("") if task.total is None else super().render(task)


def progress_bar(disable: bool = False) -> Progress:
    """The progress bar every long command shows on stderr (``disable`` it for ``--json``).

    Tasks added with ``total=None`` show a pulsing bar and the elapsed time only.
    """
    return Progress(TextColumn("{task.description}"), BarColumn(), _Count(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, disable=disable)


def step_reporter(bar: Progress, task, label: str):
    """A ``progress(message)`` callback for work that announces each step as it starts: the bar
    advances when the next step begins (the caller advances it once more at the end)."""
    started = [False]

    def step(message: str) -> None:
        if started[0]:
            bar.advance(task)
        started[0] = True
        bar.update(task, description=f"{label}: {message}")

    return step


def memory_budget(max_memory: str):
    """The process's MemoryBudget for ``--max-memory`` (exit 2 with the reason when it does not parse)."""
    from edge_sdk.runtime.memory import MemoryBudget

    try:
        return MemoryBudget(None if max_memory.strip().lower() == "none" else max_memory)
    except ValueError as exc:
        fail(f"--max-memory: {exc}")
