"""open_backend's specs and errors, the Backend/Runner contract checks, and the TensorRT runner's
life cycle (engine, context, stream and device buffers freed on close) on a fake TensorRT and CUDA."""

import types
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.runtime.backends import Backend, Runner, open_backend
from edge_sdk.runtime.backends.tensorrt.runner import TensorRTRunner
from edge_sdk.runtime.bundle import GraphInfo, TensorSpec
from edge_sdk.runtime.errors import BackendError

GRAPH = GraphInfo("classifier", Path("classifier.onnx"), "a" * 64, (TensorSpec("y_hat", (1, 4, "H/16", "W/16")),),
                  (TensorSpec("logits", (1, 3)),), 0.0)


@pytest.mark.parametrize("spec,message", [
    ("tflite", "unknown backend spec"),
    ("ort:tpu", "auto, cpu or cuda"),
    ("auto:cpu", "takes no argument"),
    ("trt", "names no engine folder"),
    ("trt:/no/such/engines", "does not exist"),
])
def test_open_backend_refuses_bad_specs_clearly(spec, message):
    with pytest.raises(BackendError, match=message):
        open_backend(spec)


def test_open_backend_opens_onnx_runtime_on_the_cpu():
    pytest.importorskip("onnxruntime")
    with open_backend("ort:cpu", threads=1) as backend:
        assert isinstance(backend, Backend) and backend.describe()["device"] == "cpu"
        assert backend.describe()["threads"] == 1
    assert backend.closed


class Doubler(Runner):
    """logits = the first three input values, doubled; records its life cycle."""

    def __init__(self, graph, log):
        super().__init__(graph)
        self.log = log

    def activate_impl(self):
        self.log.append("activate")

    def run_impl(self, feeds):
        return {"logits": 2 * feeds["y_hat"].reshape(1, -1)[:, :3]}

    def deactivate_impl(self):
        self.log.append("deactivate")


class Fake(Backend):
    name = "fake"

    def __init__(self):
        super().__init__()
        self.log = []

    def runner_impl(self, graph):
        return Doubler(graph, self.log)

    def describe(self):
        return {"backend": self.name}


def test_runner_checks_names_shapes_and_dtypes_and_backend_close_deactivates():
    backend = Fake()
    runner = backend.load(GRAPH)
    out = runner.run({"y_hat": np.ones((1, 4, 2, 3), np.float64)})
    assert out["logits"].dtype == np.float32 and out["logits"].tolist() == [[2, 2, 2]]
    with pytest.raises(BackendError, match="takes"):
        runner.run({"x": np.ones((1, 4, 2, 3))})
    with pytest.raises(BackendError, match="shape"):
        runner.run({"y_hat": np.ones((1, 5, 2, 3))})
    with pytest.raises(BackendError, match="numeric"):
        runner.run({"y_hat": np.array([["a"]])})
    with backend:
        pass
    assert backend.log == ["activate", "deactivate"] and not runner.is_active
    with pytest.raises(BackendError, match="not active"):
        runner.run({"y_hat": np.ones((1, 4, 2, 3))})
    with pytest.raises(BackendError, match="closed"):
        backend.load(GRAPH)


class FakeCuda:
    def __init__(self):
        self.live, self.streams = {}, set()

    def stream(self):
        self.streams.add(len(self.streams) + 1)
        return len(self.streams)

    def destroy_stream(self, stream):
        self.streams.remove(stream)

    def stream_handle(self, stream):
        return stream

    def malloc(self, nbytes):
        ptr = 4096 * (len(self.live) + 1)
        self.live[ptr] = bytearray(nbytes)
        return ptr

    def free(self, buffer):
        del self.live[buffer]

    def pointer(self, buffer):
        return buffer

    def to_device(self, buffer, host, stream):
        self.live[buffer][: host.nbytes] = host.tobytes()

    def to_host(self, host, buffer, stream):
        host[...] = np.frombuffer(bytes(self.live[buffer][: host.nbytes]), host.dtype).reshape(host.shape)

    def synchronize(self, stream):
        pass


def fake_tensorrt(cuda):
    """The slice of the TensorRT 10/11 runtime API the runner uses: the context sums the input
    into every logit through the fake device memory."""

    class Context:
        def __init__(self):
            self.shapes, self.addresses = {}, {}

        def set_input_shape(self, name, shape):
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            return (1, 3)

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def execute_async_v3(self, stream):
            n = int(np.prod(self.shapes["y_hat"]))
            x = np.frombuffer(bytes(cuda.live[self.addresses["y_hat"]][: 4 * n]), np.float32)
            cuda.live[self.addresses["logits"]][:12] = np.full(3, x.sum(), np.float32).tobytes()
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ("y_hat", "logits")[i]

        def get_tensor_mode(self, name):
            return "in" if name == "y_hat" else "out"

        def get_tensor_dtype(self, name):
            return np.float32

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if data == b"engine" else None

    class ILogger:
        class Severity:
            ERROR = 1

        def __init__(self):
            pass

    return types.SimpleNamespace(Runtime=Runtime, ILogger=ILogger, TensorIOMode=types.SimpleNamespace(INPUT="in"),
                                 nptype=lambda dtype: dtype)


def test_tensorrt_runner_frees_buffers_and_stream_on_deactivate(tmp_path):
    (tmp_path / "good.engine").write_bytes(b"engine")
    (tmp_path / "bad.engine").write_bytes(b"garbage")
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda)
    with TensorRTRunner(GRAPH, tmp_path / "good.engine", trt, cuda, "edge-sdk build ...") as runner:
        out = runner.run({"y_hat": np.ones((1, 4, 2, 2), np.float32)})
        assert out["logits"].tolist() == [[16.0, 16.0, 16.0]]
        assert len(cuda.live) == 2 and len(cuda.streams) == 1
    assert cuda.live == {} and cuda.streams == set() and runner.engine is None and runner.context is None
    with pytest.raises(BackendError, match="rebuild it: edge-sdk build"):
        TensorRTRunner(GRAPH, tmp_path / "bad.engine", trt, cuda, "edge-sdk build ...").activate()
