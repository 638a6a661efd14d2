"""Prometheus metrics over HTTP on 127.0.0.1: the exposition is parsed back with prometheus_client's own parser
(an independent oracle for the text format) when it is installed."""

from __future__ import annotations

import asyncio

import pytest

from sipagent.metrics import CONTENT_TYPE, Histogram, Metrics, MetricsServer
from sipagent.recording import CallFigures

pytestmark = pytest.mark.aio


async def http(port: int, request: bytes) -> tuple[str, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await reader.read()  # Connection: close: the answer ends with the connection
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status, *header_lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    assert int(headers["content-length"]) == len(body.encode())
    return status, headers, body


def two_calls() -> Metrics:
    metrics = Metrics()
    metrics.observe_call("answered", CallFigures(12.0, 3, (0.4, 0.9, 2.5), 2, (0.3, 0.15)), packets_lost=7)
    metrics.observe_call("answered", CallFigures(3.0, 1, (0.2,), 0, ()), packets_lost=0)
    metrics.observe_call('odd "label"\\', CallFigures(0.0, 0, (), 0, ()), packets_lost=-2)
    return metrics


async def test_get_metrics_after_recorded_calls() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    server = await MetricsServer.start(two_calls(), "127.0.0.1", 0)
    try:
        status, headers, body = await http(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        await server.aclose()
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == CONTENT_TYPE
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in parser.text_string_to_metric_families(body) for s in family.samples}
    assert samples[("calls_total", (("result", "answered"),))] == 2
    assert samples[("calls_total", (("result", 'odd "label"\\'),))] == 1  # escaped and read back intact
    assert samples[("barge_ins_total", ())] == 2
    assert samples[("rtp_packets_lost_total", ())] == 7
    # Histogram buckets are cumulative (le = less or equal) and end with +Inf = count.
    assert samples[("turn_latency_seconds_bucket", (("le", "0.2"),))] == 1
    assert samples[("turn_latency_seconds_bucket", (("le", "0.5"),))] == 2
    assert samples[("turn_latency_seconds_bucket", (("le", "1.0"),))] == 3
    assert samples[("turn_latency_seconds_bucket", (("le", "+Inf"),))] == 4
    assert samples[("turn_latency_seconds_count", ())] == 4
    assert samples[("turn_latency_seconds_sum", ())] == pytest.approx(4.0)
    assert samples[("barge_in_latency_seconds_count", ())] == 2
    assert samples[("barge_in_latency_seconds_sum", ())] == pytest.approx(0.45)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
    (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
    (b"nonsense\r\n\r\n", "HTTP/1.1 400 Bad Request"),
])
async def test_other_requests_are_refused(request_bytes: bytes, status: str) -> None:
    server = await MetricsServer.start(Metrics(), "127.0.0.1", 0)
    try:
        got, _, _ = await http(server.port, request_bytes)
    finally:
        await server.aclose()
    assert got == status


async def test_head_has_no_body_and_server_keeps_serving() -> None:
    server = await MetricsServer.start(two_calls(), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"HEAD /metrics HTTP/1.0\r\n\r\n")
        raw = await reader.read()
        writer.close()
        await writer.wait_closed()
        status, _, body = await http(server.port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
    finally:
        await server.aclose()
    assert raw.endswith(b"\r\n\r\n") and b"calls_total" not in raw
    assert status.endswith("200 OK") and "calls_total" in body


def test_histogram_bound_values_fall_in_their_bucket() -> None:
    histogram = Histogram("h", "help", (0.1, 0.5))
    for value in (0.1, 0.5, 0.50001, 0.0):
        histogram.observe(value)
    assert histogram.counts == [2, 1, 1]  # le="0.1": 0.0 and 0.1; le="0.5": 0.5; +Inf: the rest
    with pytest.raises(ValueError, match="calls_total"):
        Metrics().calls_total.inc(-1, "x")
