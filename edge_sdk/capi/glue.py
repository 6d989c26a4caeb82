"""The Python half of libedgesdk: each C function of edge_sdk.h that returns ``edgesdk_status``
runs one method of :class:`Glue` inside the embedded interpreter.

It calls only the public API (``edge_sdk.Decoder``, ``DecodeSession``, ``Encoder``,
``open_backend``, ``read_header``, the typed errors). Rules it keeps, because C cannot:

- nothing escapes into C: every exception becomes a status code and the thread's last-error
  text (the exception's own message), and no Python object crosses the boundary. Handles are
  integers from a registry, so a stale or foreign handle is an error and never a dereference;
- caller memory is only touched during the call (fed bytes are copied, pixels written in place);
- each decoder, with its sessions, and each encoder has a lock that every call on it takes
  (a GraphSet loads its graphs lazily and a DecodeSession is not re-entrant).

The replies carry ``EDGESDK__REPLIED`` so the C side can tell a real ``EDGESDK_OK`` from cffi's
0 when this module never ran (edgesdk.c explains).
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any, Callable, Optional

import numpy as np

from edge_sdk import (
    BackendError,
    BitstreamError,
    Bundle,
    BundleError,
    BundleMismatchError,
    ControllerError,
    CorruptStreamError,
    Decoder,
    Encoder,
    ForeignStreamError,
    ImageError,
    LimitError,
    PriorMismatchError,
    TableError,
    TableMismatchError,
    TruncatedStreamError,
    open_backend,
    read_header,
)

#: longest last-error text handed to C (its buffer holds 4096 bytes with the terminator)
MAX_MESSAGE_BYTES = 4000
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_THRESHOLD = -1.0  # EDGESDK_DEFAULT_THRESHOLD


class Failure(Exception):
    """A failure the glue itself detects, with the status it maps to."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _DecoderState:
    """What a decoder handle and its sessions share: the models, the backend, the lock, and
    the class-name strings handed to C (alive until the last of them is freed)."""

    def __init__(self, decoder: Decoder, backend, ffi):
        self.decoder = decoder
        self.backend = backend
        self.lock = threading.RLock()
        self.users = 1  # the decoder handle; each session adds one
        self._ffi = ffi
        self._names: dict[str, Any] = {}

    def c_name(self, name: str):
        c = self._names.get(name)
        if c is None:
            c = self._names[name] = self._ffi.new("char[]", name.encode("utf-8"))
        return c

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.backend.close()


class _DecoderHandle:
    def __init__(self, state: _DecoderState):
        self.state = state


class _SessionHandle:
    def __init__(self, state: _DecoderState):
        self.state = state
        self.session = state.decoder.session()
        #: (height, width) from the stream's header, once the session is ready
        self.image_size: Optional[tuple[int, int]] = None
        self._head: Optional[bytearray] = bytearray()  # the bytes before the header is known

    def note_fed(self, payload: bytes) -> None:
        if self._head is None:
            return
        self._head += payload
        if self.session.ready:
            self.image_size = tuple(read_header(bytes(self._head)).image_size)
            self._head = None


class _EncoderHandle:
    def __init__(self, encoder: Encoder, backend):
        self.encoder = encoder
        self.backend = backend
        self.lock = threading.Lock()


def _open_backend(bundle: Bundle, device: str, threads: int, engine_dir: Optional[str]):
    """The backend the options ask for: TensorRT engines, else ONNX Runtime on ``device``."""
    if engine_dir is not None:
        return open_backend(f"trt:{engine_dir}", bundle=bundle)
    return open_backend("auto" if device == "auto" else f"ort:{device}", threads=threads)


class Glue:
    """One method per fallible function of edge_sdk.h (``edgesdk_<name>`` runs ``<name>``)."""

    def __init__(self, ffi, lib):
        self.ffi = ffi
        self.lib = lib
        self._handles: dict[int, object] = {}
        # ids are never reused, so a freed handle stays invalid for the life of the process
        self._ids = itertools.count(1)

    # --- plumbing ------------------------------------------------------------------------------
    def _fail(self, status_name: str, message: str) -> Failure:
        return Failure(getattr(self.lib, status_name), message)

    def _new_handle(self, obj: object, ctype: str):
        handle_id = next(self._ids) << 4
        self._handles[handle_id] = obj
        return self.ffi.cast(ctype, handle_id)

    def _lookup(self, handle, kind: type, what: str):
        if handle == self.ffi.NULL:
            raise self._fail("EDGESDK_ERR_INVALID_HANDLE", f"the {what} handle is NULL")
        handle_id = int(self.ffi.cast("uintptr_t", handle))
        obj = self._handles.get(handle_id)
        if not isinstance(obj, kind):
            raise self._fail("EDGESDK_ERR_INVALID_HANDLE",
                             f"{what} handle {handle_id:#x} is not an open {what} (freed, never issued, "
                             "or a handle of another kind)")
        return obj

    def _out(self, pointer, name: str):
        if pointer == self.ffi.NULL:
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", f"{name} is NULL")
        return pointer

    def _string(self, pointer, default: Optional[str], *, path: bool = False) -> Optional[str]:
        if pointer == self.ffi.NULL:
            return default
        raw = self.ffi.string(pointer)
        return os.fsdecode(raw) if path else raw.decode("utf-8")

    def _options(self, pointer, ctype: str) -> Optional[Any]:
        """The caller's options struct, checked for size; None for NULL (the defaults)."""
        if pointer == self.ffi.NULL:
            return None
        expected = self.ffi.sizeof(ctype)
        if pointer.struct_size != expected:
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT",
                             f"{ctype}.struct_size is {pointer.struct_size}; this library expects {expected}: "
                             f"fill the options with {ctype}_init")
        return pointer

    def _backend_options(self, options) -> tuple[str, int, Optional[str]]:
        if options is None:
            return "auto", 0, None
        device = self._string(options.device, "auto")
        if device not in DEVICES:
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        if options.threads < 0:
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", f"threads must be >= 0 (0: one per core), got {options.threads}")
        return device, options.threads, self._string(options.engine_dir, None, path=True)

    def _bundle_dir(self, pointer) -> str:
        if pointer == self.ffi.NULL:
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", "bundle_dir is NULL")
        return self._string(pointer, None, path=True)

    def _answer(self, handle: _SessionHandle, compute: Callable[[], Any]) -> Any:
        """``compute()``, with "not enough bytes yet" reported as EDGESDK_ERR_NOT_READY."""
        try:
            return compute()
        except BitstreamError as exc:
            if type(exc) is BitstreamError and not handle.session.ready:
                raise Failure(self.lib.EDGESDK_ERR_NOT_READY, str(exc)) from exc
            raise

    def _require_controller(self, handle: _SessionHandle):
        controller = handle.state.decoder.bundle.controller
        if controller is None:
            try:  # the session's own message says how to get a controller
                handle.session.confidence()
            except ValueError as exc:
                raise Failure(self.lib.EDGESDK_ERR_NO_CONTROLLER, str(exc)) from exc
        return controller

    def status_of(self, exc: BaseException) -> tuple[int, str]:
        """The status code and last-error text for an exception."""
        lib = self.lib
        message = str(exc) or type(exc).__name__
        if isinstance(exc, Failure):
            return exc.status, message
        for kinds, status in (
            (MemoryError, lib.EDGESDK_ERR_OUT_OF_MEMORY),
            (TruncatedStreamError, lib.EDGESDK_ERR_TRUNCATED),
            (CorruptStreamError, lib.EDGESDK_ERR_CORRUPT),
            (ForeignStreamError, lib.EDGESDK_ERR_FOREIGN_STREAM),
            ((BundleMismatchError, TableMismatchError, PriorMismatchError), lib.EDGESDK_ERR_MISMATCH),
            (BitstreamError, lib.EDGESDK_ERR_BITSTREAM),
            ((BundleError, ControllerError, TableError), lib.EDGESDK_ERR_BUNDLE),
            (BackendError, lib.EDGESDK_ERR_BACKEND),
            (ImageError, lib.EDGESDK_ERR_IMAGE),
            (LimitError, lib.EDGESDK_ERR_LIMIT),
            ((ValueError, TypeError, OverflowError), lib.EDGESDK_ERR_INVALID_ARGUMENT),
        ):
            if isinstance(exc, kinds):
                return status, message
        return lib.EDGESDK_ERR_INTERNAL, f"{type(exc).__name__}: {message}"

    def entry(self, method: Callable[..., None]) -> Callable[..., int]:
        """``method`` as an ``extern "Python"`` function: the reply code, never an exception."""
        replied, ok, internal = self.lib.EDGESDK__REPLIED, self.lib.EDGESDK_OK, self.lib.EDGESDK_ERR_INTERNAL

        def call(*args):
            try:
                method(*args)
                return replied | ok
            except BaseException as exc:  # noqa: BLE001 - an exception reaching cffi would be printed and read as 0
                try:
                    status, message = self.status_of(exc)
                    text = message.encode("utf-8", "replace")[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore")
                    self.lib.edgesdk__set_error(text.encode("utf-8"))
                except BaseException:  # noqa: BLE001
                    status = internal
                return replied | status

        return call

    # --- decoder -------------------------------------------------------------------------------
    def decoder_open(self, bundle_dir, options, decoder_out) -> None:
        self._out(decoder_out, "decoder (the output)")
        path = self._bundle_dir(bundle_dir)
        opts = self._options(options, "edgesdk_decoder_options")
        device, threads, engine_dir = self._backend_options(opts)
        kwargs = {}
        if opts is not None:
            kwargs["reconstruction"] = self._string(opts.reconstruction, "midpoint")
            if opts.max_latent_elements:
                kwargs["max_latent_elements"] = int(opts.max_latent_elements)
        bundle = Bundle.load(path)
        backend = _open_backend(bundle, device, threads, engine_dir)
        try:
            decoder = Decoder(bundle, backend, **kwargs)
        except BaseException:
            backend.close()
            raise
        decoder_out[0] = self._new_handle(_DecoderHandle(_DecoderState(decoder, backend, self.ffi)),
                                          "edgesdk_decoder *")

    def decoder_free(self, decoder) -> None:
        if decoder == self.ffi.NULL:
            return
        handle = self._lookup(decoder, _DecoderHandle, "decoder")
        del self._handles[int(self.ffi.cast("uintptr_t", decoder))]
        with handle.state.lock:
            handle.state.release()

    def decoder_num_classes(self, decoder, count) -> None:
        handle = self._lookup(decoder, _DecoderHandle, "decoder")
        self._out(count, "count")[0] = len(handle.state.decoder.bundle.class_names)

    def decoder_class_name(self, decoder, index, name) -> None:
        handle = self._lookup(decoder, _DecoderHandle, "decoder")
        self._out(name, "name")
        names = handle.state.decoder.bundle.class_names
        if index >= len(names):
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", f"class index {index} is out of range: the bundle has "
                             f"{len(names)} classes")
        with handle.state.lock:
            name[0] = handle.state.c_name(names[index])

    def decoder_has_controller(self, decoder, has) -> None:
        handle = self._lookup(decoder, _DecoderHandle, "decoder")
        self._out(has, "has")[0] = int(handle.state.decoder.bundle.controller is not None)

    def decoder_default_threshold(self, decoder, threshold) -> None:
        handle = self._lookup(decoder, _DecoderHandle, "decoder")
        self._out(threshold, "threshold")
        bundle = handle.state.decoder.bundle
        if bundle.controller is None:
            raise self._fail("EDGESDK_ERR_NO_CONTROLLER", f"bundle {bundle.path} has no decoding controller; "
                             "fit one with `edge-sdk calibrate`")
        threshold[0] = bundle.controller.default_threshold

    # --- session -------------------------------------------------------------------------------
    def session_create(self, decoder, session_out) -> None:
        self._out(session_out, "session (the output)")
        state = self._lookup(decoder, _DecoderHandle, "decoder").state
        with state.lock:
            handle = _SessionHandle(state)
            state.users += 1
        session_out[0] = self._new_handle(handle, "edgesdk_session *")

    def session_free(self, session) -> None:
        if session == self.ffi.NULL:
            return
        handle = self._lookup(session, _SessionHandle, "session")
        del self._handles[int(self.ffi.cast("uintptr_t", session))]
        with handle.state.lock:
            handle.state.release()

    def session_feed(self, session, data, size, level) -> None:
        handle = self._lookup(session, _SessionHandle, "session")
        if data == self.ffi.NULL and size:
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", f"data is NULL with size {size}")
        # a copy: the caller may reuse its buffer as soon as the call returns
        payload = self.ffi.buffer(data, size)[:] if size else b""
        with handle.state.lock:
            try:
                handle.session.feed(payload)
            finally:
                handle.note_fed(payload)
            if level != self.ffi.NULL:
                level[0] = handle.session.level

    def _read(self, session, out, name: str, value: Callable[[Any], int]) -> None:
        """Write ``value(the DecodeSession)`` to ``out``, read under the decoder's lock: a feed on
        another thread releases the GIL inside ONNX Runtime with its levels half advanced."""
        handle = self._lookup(session, _SessionHandle, "session")
        self._out(out, name)
        with handle.state.lock:
            out[0] = value(handle.session)

    def session_is_ready(self, session, ready) -> None:
        self._read(session, ready, "ready", lambda s: int(s.ready))

    def session_is_complete(self, session, complete) -> None:
        self._read(session, complete, "complete", lambda s: int(s.complete))

    def session_level(self, session, level) -> None:
        self._read(session, level, "level", lambda s: s.level)

    def session_num_levels(self, session, levels) -> None:
        self._read(session, levels, "levels", lambda s: -1 if s.num_levels is None else s.num_levels)

    def session_bytes_used(self, session, nbytes) -> None:
        self._read(session, nbytes, "bytes", lambda s: s.bytes_used)

    def session_bytes_received(self, session, nbytes) -> None:
        self._read(session, nbytes, "bytes", lambda s: s.bytes_received)

    def session_confidence(self, session, probability) -> None:
        handle = self._lookup(session, _SessionHandle, "session")
        self._out(probability, "probability")
        with handle.state.lock:
            self._require_controller(handle)
            probability[0] = self._answer(handle, handle.session.confidence)

    def session_confident(self, session, threshold, confident) -> None:
        handle = self._lookup(session, _SessionHandle, "session")
        self._out(confident, "confident")
        with handle.state.lock:
            controller = self._require_controller(handle)
            if threshold == DEFAULT_THRESHOLD:
                threshold = controller.default_threshold
            elif not 0.0 <= threshold <= 1.0:  # NaN fails this too
                raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", f"threshold must lie in [0, 1] or be "
                                 f"EDGESDK_DEFAULT_THRESHOLD, got {threshold}")
            confident[0] = int(self._answer(handle, lambda: handle.session.confident(threshold)))

    def session_classify(self, session, k, indices, probabilities, names, count) -> None:
        handle = self._lookup(session, _SessionHandle, "session")
        if k < 1:
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", "k must be at least 1")
        null = self.ffi.NULL
        with handle.state.lock:
            prediction = self._answer(handle, lambda: handle.session.classify(k=k))
            for i, score in enumerate(prediction.top_k):
                if indices != null:
                    indices[i] = score.index
                if probabilities != null:
                    probabilities[i] = score.probability
                if names != null:
                    names[i] = handle.state.c_name(score.name)
        if count != null:
            count[0] = len(prediction.top_k)

    def session_image_size(self, session, width, height, rgb8_bytes) -> None:
        handle = self._lookup(session, _SessionHandle, "session")
        with handle.state.lock:
            size = handle.image_size
        if size is None:
            raise self._fail("EDGESDK_ERR_NOT_READY", "the image size is not known yet: the header and z section "
                             "have not all arrived")
        h, w = size
        null = self.ffi.NULL
        if width != null:
            width[0] = w
        if height != null:
            height[0] = h
        if rgb8_bytes != null:
            rgb8_bytes[0] = h * w * 3

    def session_reconstruct_rgb8(self, session, pixels, capacity) -> None:
        handle = self._lookup(session, _SessionHandle, "session")
        with handle.state.lock:
            if handle.image_size is None:  # the session's own error, as EDGESDK_ERR_NOT_READY
                self._answer(handle, handle.session.reconstruct)
            h, w = handle.image_size
            need = h * w * 3
            if pixels == self.ffi.NULL:
                raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", "pixels is NULL")
            if capacity < need:
                raise self._fail("EDGESDK_ERR_BUFFER_TOO_SMALL", f"the pixel buffer holds {capacity} bytes; the "
                                 f"{w}x{h} RGB8 image needs {need} (edgesdk_session_image_size)")
            out = np.frombuffer(self.ffi.buffer(pixels, need), dtype=np.uint8).reshape(h, w, 3)
            self._answer(handle, lambda: handle.session.reconstruct(out=out))

    # --- encoder -------------------------------------------------------------------------------
    def encoder_open(self, bundle_dir, options, encoder_out) -> None:
        self._out(encoder_out, "encoder (the output)")
        path = self._bundle_dir(bundle_dir)
        opts = self._options(options, "edgesdk_encoder_options")
        device, threads, engine_dir = self._backend_options(opts)
        kwargs = {}
        if opts is not None:
            kwargs["prior"] = self._string(opts.prior, None)
            kwargs["short_side"] = int(opts.short_side)
        bundle = Bundle.load(path)
        backend = _open_backend(bundle, device, threads, engine_dir)
        try:
            encoder = Encoder(bundle, backend, **kwargs)
        except BaseException:
            backend.close()
            raise
        encoder_out[0] = self._new_handle(_EncoderHandle(encoder, backend), "edgesdk_encoder *")

    def encoder_free(self, encoder) -> None:
        if encoder == self.ffi.NULL:
            return
        handle = self._lookup(encoder, _EncoderHandle, "encoder")
        del self._handles[int(self.ffi.cast("uintptr_t", encoder))]
        with handle.lock:
            handle.backend.close()

    def encode_rgb8(self, encoder, pixels, width, height, row_stride, data, size) -> None:
        handle = self._lookup(encoder, _EncoderHandle, "encoder")
        self._out(data, "data")
        self._out(size, "size")
        if pixels == self.ffi.NULL:
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", "pixels is NULL")
        stride = row_stride or width * 3
        if stride < width * 3:
            raise self._fail("EDGESDK_ERR_INVALID_ARGUMENT", f"row_stride {row_stride} is less than width * 3 = "
                             f"{width * 3}")
        if width * height > handle.encoder.max_pixels:  # before the pixels are read
            raise ImageError(f"image has {width * height} pixels, more than the limit of {handle.encoder.max_pixels}")
        extent = stride * (height - 1) + width * 3 if width and height else 0
        # a view of the caller's rows; the Encoder converts it to float (a copy) before anything else
        image = np.ndarray((height, width, 3), dtype=np.uint8, buffer=self.ffi.buffer(pixels, extent),
                           strides=(stride, 3, 1))
        with handle.lock:
            stream = handle.encoder.encode(image)
        buffer = self.lib.edgesdk__alloc(len(stream))
        if buffer == self.ffi.NULL:
            raise MemoryError(f"cannot allocate {len(stream)} bytes for the stream")
        self.ffi.memmove(buffer, stream, len(stream))
        data[0] = self.ffi.cast("uint8_t *", buffer)
        size[0] = len(stream)


def glue_functions() -> list[str]:
    """The names :class:`Glue` implements (``edgesdk_<name>`` in edge_sdk.h)."""
    return sorted(n for n, v in vars(Glue).items() if callable(v) and not n.startswith("_")
                  and n not in ("status_of", "entry"))


def install(ffi, lib) -> Glue:
    """Define every ``edgesdk__py_<name>`` the library declares; refuse to start with one missing."""
    glue = Glue(ffi, lib)
    declared = sorted(n[len("edgesdk__py_"):] for n in dir(lib) if n.startswith("edgesdk__py_"))
    missing = sorted(set(declared) - set(glue_functions()))
    if missing:
        raise RuntimeError(f"libedgesdk declares functions this edge-sdk does not implement: {missing}; "
                           "rebuild the library with `edge-sdk c-lib` from the installed edge-sdk")
    replied_internal = lib.EDGESDK__REPLIED | lib.EDGESDK_ERR_INTERNAL
    for name in declared:
        ffi.def_extern(name=f"edgesdk__py_{name}", error=replied_internal)(glue.entry(getattr(glue, name)))
    return glue
