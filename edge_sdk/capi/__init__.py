"""The C ABI of edge-sdk: ``libedgesdk.so`` + ``edge_sdk.h`` + ``edgesdk.pc`` (docs/c-api.md).

:func:`build_library` (``edge-sdk c-lib --out DIR``) compiles the library with cffi's embedding
mode; :mod:`.glue` is the Python each C call runs, on the public API only.
"""

from edge_sdk.capi.build import HEADER, LIBRARY, PKG_CONFIG, abi_version, build_library, toolchain_problem

__all__ = ["HEADER", "LIBRARY", "PKG_CONFIG", "abi_version", "build_library", "toolchain_problem"]
