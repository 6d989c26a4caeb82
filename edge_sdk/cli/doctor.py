"""``edge-sdk doctor`` and ``version``: what this machine and this installation can run."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess

import typer
from rich.table import Table

from edge_sdk import __version__
from edge_sdk.cli.common import app, console
from edge_sdk.runtime import FORMAT_VERSION


@app.command()
def version() -> None:
    """Print the edge-sdk version and the stream format version it reads."""
    print(f"edge-sdk {__version__} (stream format {FORMAT_VERSION})")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Report what this machine can run: numpy, numba, ONNX Runtime providers, TensorRT, CUDA GPUs."""
    import numpy

    report: dict = {"python": platform.python_version(), "machine": platform.machine(), "numpy": numpy.__version__}
    try:
        import numba

        report["numba"] = numba.__version__
    except ImportError:
        report["numba"] = None
    try:
        import onnxruntime

        report["onnxruntime"] = {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    except ImportError:
        report["onnxruntime"] = None
    try:
        import tensorrt  # noqa: F401

        report["tensorrt"] = tensorrt.__version__
    except ImportError:
        report["tensorrt"] = None
    if report["tensorrt"]:
        from edge_sdk.runtime.backends.tensorrt import build_strategy
        from edge_sdk.runtime.errors import BackendError

        try:
            report["tensorrt_build"] = build_strategy(report["tensorrt"])
        except BackendError as exc:
            report["tensorrt_build"] = str(exc)
    try:
        from cuda.bindings import runtime as _cudart  # noqa: F401

        report["cuda_python"] = True
    except ImportError:
        report["cuda_python"] = False
    gpus = []
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,memory.total,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            gpus = [dict(zip(("name", "compute_capability", "memory", "driver"), (f.strip() for f in line.split(","))))
                    for line in out.stdout.strip().splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    report["cuda_gpus"] = gpus
    report["backends"] = {
        "onnxruntime-cpu": report["onnxruntime"] is not None,
        "onnxruntime-cuda": bool(report["onnxruntime"]) and "CUDAExecutionProvider" in report["onnxruntime"]["providers"],
        "tensorrt": report["tensorrt"] is not None and bool(gpus) and report["cuda_python"],
    }
    if as_json:
        print(json.dumps(report))
        return
    table = Table(title="edge-sdk doctor", show_header=False)
    for key in ("python", "machine", "numpy", "numba"):
        table.add_row(key, str(report[key]))
    ort = report["onnxruntime"]
    table.add_row("onnxruntime", f"{ort['version']} ({', '.join(ort['providers'])})" if ort else "not installed")
    table.add_row("tensorrt", f"{report['tensorrt']} ({report.get('tensorrt_build')})" if report["tensorrt"] else
                  "not installed (JetPack: python3-libnvinfer; desktop: pypi.nvidia.com); see docs/tensorrt.md")
    table.add_row("cuda-python", "yes" if report["cuda_python"] else "no (pip install 'edge-sdk[trt]')")
    table.add_row("CUDA GPUs", "; ".join(f"{g['name']} (sm {g['compute_capability']})" for g in gpus) or "none found")
    table.add_row("usable backends", ", ".join(k for k, v in report["backends"].items() if v) or "none")
    console.print(table)
