"""Build libedgesdk.so, edge_sdk.h and edgesdk.pc (``edge-sdk c-lib --out DIR``) with cffi's embedding mode.

Why cffi: its embedding mode makes a plain shared library whose exported C functions start
CPython on first use and call Python functions, with the C declarations written once as C text.
It compiles with the system C compiler at install time, needs no C++ toolchain or CMake (as
pybind11 or nanobind with an embedded interpreter would), and cffi is a small, long-kept
dependency. The library is tied to the Python environment it was built from (its interpreter
path is baked in), which is the nature of any library that embeds CPython.

What is generated: ``edge_sdk.h`` is the public header, written by hand; the text between its
``EDGESDK_CDEF_BEGIN`` / ``EDGESDK_CDEF_END`` markers (types and constants) is also cffi's
declaration of them. Every public function returning ``edgesdk_status`` is a C wrapper, generated
here from its declaration in the header, around ``edgesdk__py_<name>`` in :mod:`.glue`; the other
public functions (version, last error, option defaults, buffer release) are plain C in
``edgesdk.c``. So the header is the single list of the ABI.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edge_sdk import __version__
from edge_sdk.runtime.fileio import atomic_directory

HERE = Path(__file__).resolve().parent
HEADER = HERE / "edge_sdk.h"
C_SOURCE = HERE / "edgesdk.c"
#: the module name cffi gives the embedded half (the init code imports ``ffi`` and ``lib`` from it)
MODULE_NAME = "_edgesdk_capi"
LIBRARY = "libedgesdk.so"
PKG_CONFIG = "edgesdk.pc"

_FALLIBLE = re.compile(r"EDGESDK_API\s+edgesdk_status\s+edgesdk_(\w+)\s*\(([^)]*)\)\s*;")
_VERSION = re.compile(r"#define\s+EDGESDK_ABI_VERSION_(MAJOR|MINOR)\s+(\d+)")

#: runs inside the embedded interpreter on the library's first call: install the glue's functions.
#: If that fails, the cause is kept for edgesdk_last_error() and re-raised (cffi prints the
#: traceback on stderr and then answers every call with 0, which the C wrappers report as
#: EDGESDK_ERR_RUNTIME_INIT).
_INIT_CODE = f"""
from {MODULE_NAME} import ffi, lib
try:
    from edge_sdk.capi import glue
    glue.install(ffi, lib)
except BaseException as exc:
    lib.edgesdk__set_start_error(f"{{type(exc).__name__}}: {{exc}}".encode("utf-8", "replace")[:4000])
    raise
"""


@dataclass(frozen=True)
class Function:
    """One fallible public function of the header: ``edgesdk_<name>(<params>)``."""

    name: str
    params: tuple[tuple[str, str], ...]  # (C type, parameter name)

    @property
    def signature(self) -> str:
        return ", ".join(f"{ctype} {pname}" for ctype, pname in self.params) or "void"

    @property
    def arguments(self) -> str:
        return ", ".join(pname for _, pname in self.params)


def abi_version() -> tuple[int, int]:
    """(major, minor) as the header defines them."""
    found = dict(_VERSION.findall(HEADER.read_text()))
    return int(found["MAJOR"]), int(found["MINOR"])


def fallible_functions(header: str) -> list[Function]:
    """The header's functions that return ``edgesdk_status``, in header order."""
    functions = []
    for name, params in _FALLIBLE.findall(header):
        parsed = []
        for param in " ".join(params.split()).split(","):
            param = param.strip()
            if param in ("", "void"):
                continue
            match = re.fullmatch(r"(.*?[\s*])(\w+)", param)
            if match is None:
                raise ValueError(f"edge_sdk.h: cannot read parameter {param!r} of edgesdk_{name}")
            parsed.append((match.group(1).strip(), match.group(2)))
        functions.append(Function(name, tuple(parsed)))
    return functions


def cdef_region(header: str) -> str:
    """The header's declarations between the cffi markers."""
    start = header.index("EDGESDK_CDEF_BEGIN")
    start = header.index("*/", start) + 2
    end = header.index("/* EDGESDK_CDEF_END */")
    return header[start:end]


def c_literal(text: str) -> str:
    """``text`` as a C string literal (UTF-8; quotes, backslashes and control bytes escaped)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def generated_source(functions: list[Function], python_executable: str) -> str:
    """edgesdk.c with its two baked constants before it and the wrappers after it."""
    head = (f"static const char edgesdk__python_executable[] = {c_literal(python_executable)};\n"
            f"static const char edgesdk__package_version[] = {c_literal(__version__)};\n")
    wrappers = []
    for f in functions:
        wrappers.append(
            f"static int32_t edgesdk__py_{f.name}({f.signature});\n"
            f"EDGESDK_API edgesdk_status edgesdk_{f.name}({f.signature})\n"
            "{\n"
            "    if (edgesdk__start() != 0)\n"
            "        return EDGESDK_ERR_RUNTIME_INIT;\n"
            f"    return edgesdk__reply(edgesdk__py_{f.name}({f.arguments}));\n"
            "}\n")
    return head + C_SOURCE.read_text() + "\n" + "\n".join(wrappers)


def generated_cdef(header: str, functions: list[Function]) -> str:
    """What cffi is told: the header's types, the helpers the glue calls, the glue's functions."""
    internal = [
        "#define EDGESDK__REPLIED 16384",
        "void edgesdk__set_error(const char *message);",
        "void edgesdk__set_start_error(const char *message);",
        "void *edgesdk__alloc(size_t size);",
    ]
    internal += [f'extern "Python" int32_t edgesdk__py_{f.name}({f.signature});' for f in functions]
    return cdef_region(header) + "\n" + "\n".join(internal) + "\n"


def toolchain_problem() -> Optional[str]:
    """Why this machine cannot build the library (a sentence naming what to install), or None."""
    try:
        import cffi  # noqa: F401
    except ImportError:
        return "cffi is not installed: pip install 'edge-sdk[capi]'"
    try:
        import setuptools  # noqa: F401  (cffi compiles through setuptools' distutils)
    except ImportError:
        return "setuptools is not installed: pip install 'edge-sdk[capi]'"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(os.environ.get("CC", compiler).split()[0]) is None:
        return f"no C compiler ({os.environ.get('CC', compiler)}) on PATH: install gcc (Debian: apt-get install gcc)"
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        return (f"Python's C headers are missing ({include}/Python.h): install them "
                f"(Debian: apt-get install python3-dev, for this Python {sys.version_info[0]}.{sys.version_info[1]})")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return ("this Python has no shared libpython, which an embedding library links to: use a Python built "
                "with --enable-shared (Debian's python3, pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared)")
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
    if not (libdir / sysconfig.get_config_var("LDLIBRARY")).exists():
        return (f"{libdir / sysconfig.get_config_var('LDLIBRARY')} is missing: install the development library "
                f"(Debian: apt-get install libpython{sys.version_info[0]}.{sys.version_info[1]}-dev)")
    return None


def _compile(work: Path, python_executable: str) -> Path:
    import cffi

    header = HEADER.read_text()
    functions = fallible_functions(header)
    major, _ = abi_version()
    libdir = sysconfig.get_config_var("LIBDIR")
    ffibuilder = cffi.FFI()
    ffibuilder.cdef(generated_cdef(header, functions))
    ffibuilder.embedding_init_code(_INIT_CODE)
    ffibuilder.set_source(
        MODULE_NAME, generated_source(functions, python_executable),
        include_dirs=[str(HERE)],
        library_dirs=[libdir],
        # hidden by default: only the EDGESDK_API functions are the library's interface
        extra_compile_args=["-fvisibility=hidden"],
        extra_link_args=[f"-Wl,-soname,{LIBRARY}.{major}", f"-Wl,-rpath,{libdir}"],
    )
    built = ffibuilder.compile(tmpdir=str(work), target=f"{LIBRARY}.{major}", verbose=False)
    return Path(built)


def _is_our_output(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and (not any(path.iterdir()) or (path / PKG_CONFIG).is_file()))


def pkg_config_text(out: Path) -> str:
    major, minor = abi_version()
    return (f"prefix={out}\n"
            "libdir=${prefix}\n"
            "includedir=${prefix}\n"
            "\n"
            "Name: edgesdk\n"
            f"Description: edge-sdk's C ABI {major}.{minor}: progressive learned-image decoding and "
            "compressed-domain classification (embeds CPython)\n"
            f"Version: {__version__}\n"
            "Cflags: -I${includedir}\n"
            # the rpath lets programs find the library where it was built, without LD_LIBRARY_PATH
            "Libs: -L${libdir} -Wl,-rpath,${libdir} -ledgesdk\n")


def build_library(out: str | Path, python_executable: Optional[str] = None) -> Path:
    """Write ``libedgesdk.so`` (a link to ``libedgesdk.so.<ABI major>``), ``edge_sdk.h`` and
    ``edgesdk.pc`` into ``out``, all at once (a reader never sees a half-built folder).

    ``python_executable``: the interpreter whose environment the library runs in (default: this one,
    ``sys.executable``, so a virtualenv's python gives that virtualenv). ``out`` may be new, empty,
    or an earlier output of this function; any other existing folder is refused rather than replaced.
    Raises RuntimeError naming what is missing or what the compiler said.
    """
    out = Path(out).absolute()
    problem = toolchain_problem()
    if problem:
        raise RuntimeError(problem)
    if not _is_our_output(out):
        raise RuntimeError(f"{out} exists and is not an earlier `edge-sdk c-lib` output (it has no {PKG_CONFIG}); "
                           "choose a new or empty folder")
    major, _ = abi_version()
    with tempfile.TemporaryDirectory(prefix="edgesdk-build-") as work, atomic_directory(out) as tmp:
        try:
            built = _compile(Path(work), python_executable or sys.executable)
        except Exception as exc:  # cffi raises distutils' CompileError / LinkError with the compiler's words
            raise RuntimeError(f"building {LIBRARY} failed: {type(exc).__name__}: {exc}") from exc
        shutil.copy2(built, tmp / f"{LIBRARY}.{major}")
        os.symlink(f"{LIBRARY}.{major}", tmp / LIBRARY)
        shutil.copy2(HEADER, tmp / HEADER.name)
        (tmp / PKG_CONFIG).write_text(pkg_config_text(out))
    return out
