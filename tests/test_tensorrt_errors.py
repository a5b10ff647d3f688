"""TensorRT's errors reach the network, build or engine call that caused them, in every thread.

TensorRT has one logger per process; netdef.backend files each message in the sink of the
thread and context that made the call (a Network's own while it is active, `capture()`
elsewhere). With a tiny switch interval the threads interleave between every few bytecodes.
"""
from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import netdef
from netdef import backend, nn
from netdef import functional as F
from netdef.inspect import describe_network

from helpers import randn


class Tower(nn.Module):
    """A few dozen layers, so a trace spans many switch intervals."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1) for _ in range(depth)])

    def forward(self, x):
        for conv in self.convs:
            x = F.relu(conv(x)) + x
        return x


class Mismatch(nn.Module):
    """A real TensorRT error: the add's operands cannot broadcast (TensorRT, not netdef, says so)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.head(x) + F.reshape(x, (1, 8, 8, 4))


def _tower(seed: int) -> Tower:
    rng = np.random.default_rng(seed)
    m = Tower(depth=6 + seed)
    m.load_state_dict({k: randn(rng, *v.shape) for k, v in m.state_dict().items()})
    return m


X = netdef.Input("x", (1, 4, 8, 8))


@pytest.fixture
def short_switch_interval():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _raw_broadcast_error(net: netdef.Network) -> None:
    """Make TensorRT log an error inside `net` (active in this thread) without taking it."""
    t = backend.trt()
    x = net.network.add_input("x", t.float32, (1, 3))
    y = net.network.add_input("y", t.float32, (1, 4))
    layer = net.network.add_elementwise(x, y, t.ElementWiseOperation.SUM)
    with pytest.raises(RuntimeError):
        _ = layer.get_output(0).shape


def test_an_error_stays_with_its_network_while_another_thread_traces():
    """Deterministic interleaving: thread A's network holds an untaken TensorRT error while thread
    B traces a whole model; B succeeds unchanged and A still finds its own error afterwards."""
    tower = _tower(2)
    serial = describe_network(netdef.trace(tower, X), calls=True)
    logged, traced = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def a() -> None:
        net = netdef.Network("a")
        with net:
            _raw_broadcast_error(net)
            logged.set()
            traced.wait(60)
            results["a"] = net.errors.take()

    def b() -> None:
        logged.wait(60)
        try:
            results["b"] = describe_network(netdef.trace(tower, X), calls=True)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion below
            results["b"] = exc
        traced.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results["b"] == serial
    assert any("broadcast dimensions must be conformable" in e for e in results["a"])


def test_only_the_thread_with_a_tensorrt_error_fails(short_switch_interval):
    """4 threads trace while a fifth keeps hitting a TensorRT error, switching every microsecond."""
    towers = [_tower(i) for i in range(4)]
    serial = [describe_network(netdef.trace(m, X), calls=True) for m in towers]
    bad = Mismatch()
    done = threading.Event()
    start = threading.Barrier(5)
    results: dict[object, object] = {}

    def healthy(i: int) -> None:
        start.wait()
        descriptions = []
        try:
            while not done.is_set() or not descriptions:
                descriptions.append(describe_network(netdef.trace(towers[i], X), calls=True))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion below
            descriptions.append(exc)
        results[i] = descriptions

    def broken() -> None:
        start.wait()
        outcomes = []
        for _ in range(150):
            try:
                netdef.trace(bad, X)
            except Exception as exc:  # noqa: BLE001
                outcomes.append(exc)
        done.set()
        results["bad"] = outcomes

    threads = [threading.Thread(target=healthy, args=(i,)) for i in range(4)] + [threading.Thread(target=broken)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(4):
        assert all(d == serial[i] for d in results[i]), f"healthy thread {i}: {results[i][-1]!r:.300}"
    assert len(results["bad"]) == 150
    for exc in results["bad"]:
        assert isinstance(exc, netdef.TraceError)
        assert "TensorRT rejected the add layer at top level" in str(exc)
        assert "broadcast dimensions must be conformable" in str(exc)


def test_builds_in_threads_report_their_own_errors(short_switch_interval):
    """Two builds at once: the one without outputs fails with its own message, the other builds."""
    results = {}

    def good() -> None:
        results["good"] = netdef.build(_tower(0), X, progress=False)

    def no_outputs() -> None:
        net = netdef.Network("no_outputs")
        net.network.add_input("x", backend.trt().float32, (1, 3))
        try:
            netdef.build(net, progress=False)
        except netdef.BuildError as exc:
            results["bad"] = exc

    threads = [threading.Thread(target=good), threading.Thread(target=no_outputs)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results["good"]) > 1000
    assert "could not build network 'no_outputs'" in str(results["bad"])
    assert "at least one output" in str(results["bad"])


def test_capture_keeps_messages_apart_and_restores_the_outer_sink():
    outer_errors = backend.logger().take_errors()  # start clean in this thread
    assert isinstance(outer_errors, list)
    net = netdef.Network("scratch")
    with backend.capture() as outer:
        with backend.capture() as inner:
            _raw_broadcast_error(net)
        assert any("broadcast" in e for e in inner.take())
        assert outer.take() == []
    assert backend.logger().take_errors() == []


def test_a_lone_cuda_error_is_reported_not_dropped():
    """Without a GPU TensorRT-RTX echoes a 'catchCudaError' line after real errors: dropped then,
    but when it is the only error it is the message (a real CUDA failure must not read 'no message')."""
    sink = backend.ErrorSink()
    echo = "[checkMacros.cpp::catchCudaError::250] Error Code 1: Cuda Runtime (cudaError 35)"
    sink.errors.extend(["IRuntime::deserializeCudaEngine: Error Code 1: Cuda Runtime", echo])
    assert sink.take() == ["IRuntime::deserializeCudaEngine: Error Code 1: Cuda Runtime"]
    sink.errors.append(echo)
    assert sink.take() == [echo]
    assert sink.take() == []


def test_a_sink_nobody_reads_stays_bounded():
    sink = backend.ErrorSink()
    with backend.capture(sink):
        net = netdef.Network("scratch")
        x = net.network.add_input("x", backend.trt().float32, (1, 3))
        y = net.network.add_input("y", backend.trt().float32, (1, 4))
        for _ in range(backend.ErrorSink.LIMIT // 2 + 10):
            layer = net.network.add_elementwise(x, y, backend.trt().ElementWiseOperation.SUM)
            with pytest.raises(RuntimeError):
                _ = layer.get_output(0).shape
    assert len(sink.errors) == backend.ErrorSink.LIMIT
