"""Prometheus metrics of the endpoint, in the text exposition format (version 0.0.4), without a dependency.

The endpoint updates them once per call, at its end, from the recorder's figures; :class:`MetricsServer` answers
``GET /metrics`` on a small asyncio server (loopback by default). Label values are escaped as the format asks
(backslash, double quote, newline); histogram buckets are cumulative with a final ``+Inf``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math

from sipagent.recording import CallFigures

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
_REQUEST_TIMEOUT = 5.0
_MAX_HEADER_LINES = 100


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str, label: str | None = None) -> None:
        self.name, self.help, self.label = name, help_text, label
        self.values: dict[str, float] = {} if label else {"": 0.0}

    def inc(self, amount: float = 1.0, label_value: str = "") -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up (got {amount})")
        self.values[label_value] = self.values.get(label_value, 0.0) + amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for value, total in sorted(self.values.items()):
            labels = f'{{{self.label}="{_escape(value)}"}}' if self.label else ""
            lines.append(f"{self.name}{labels} {_number(total)}")
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help = name, help_text
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: a value on a bound falls in that bucket
        self.sum += value
        self.count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            le = "+Inf" if math.isinf(bound) else repr(float(bound))  # "1.0", as the client libraries write it
            lines.append(f'{self.name}_bucket{{le="{le}"}} {running}')
        lines += [f"{self.name}_sum {_number(self.sum)}", f"{self.name}_count {self.count}"]
        return lines


class Metrics:
    def __init__(self) -> None:
        self.calls_total = Counter("calls_total", "Calls handled, by result.", "result")
        self.barge_ins_total = Counter("barge_ins_total", "Times the caller interrupted the agent.")
        self.rtp_packets_lost_total = Counter("rtp_packets_lost_total",
                                              "RTP packets from callers never received (RFC 3550 A.3).")
        self.turn_latency_seconds = Histogram(
            "turn_latency_seconds", "End of the caller's turn to the first agent audio sent.")
        self.barge_in_latency_seconds = Histogram(
            "barge_in_latency_seconds", "Caller voice onset to the agent's audio stopping on the line.")

    def observe_call(self, result: str, figures: CallFigures, packets_lost: int) -> None:
        self.calls_total.inc(1, result)
        self.barge_ins_total.inc(figures.barge_ins)
        self.rtp_packets_lost_total.inc(max(packets_lost, 0))  # RFC 3550 cumulative loss can go negative
        for latency in figures.turn_latencies_s:
            self.turn_latency_seconds.observe(latency)
        for latency in figures.barge_in_latencies_s:
            self.barge_in_latency_seconds.observe(latency)

    def exposition(self) -> str:
        lines: list[str] = []
        for metric in (self.calls_total, self.barge_ins_total, self.rtp_packets_lost_total,
                       self.turn_latency_seconds, self.barge_in_latency_seconds):
            lines += metric.render()
        return "\n".join(lines) + "\n"


class MetricsServer:
    """``GET /metrics`` over HTTP/1.x, one request per connection."""

    def __init__(self, metrics: Metrics, server: asyncio.Server) -> None:
        self.metrics = metrics
        self._server = server

    @classmethod
    async def start(cls, metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
        holder: list[MetricsServer] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await holder[0]._handle(reader, writer)

        server = await asyncio.start_server(handle, host, port)
        holder.append(cls(metrics, server))
        return holder[0]

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                request = (await reader.readline()).decode("latin-1").split()
                for _ in range(_MAX_HEADER_LINES):  # RFC 9112 §2.1: headers end at an empty line
                    if (await reader.readline()).strip() == b"":
                        break
            status, body = self._answer(request)
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode("ascii") + (body if request[:1] != ["HEAD"] else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, request: list[str]) -> tuple[str, bytes]:
        if len(request) != 3 or not request[2].startswith("HTTP/"):
            return "400 Bad Request", b"bad request\n"
        method, target = request[0], request[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"only GET\n"
        if target != "/metrics":
            return "404 Not Found", b"see /metrics\n"
        return "200 OK", self.metrics.exposition().encode("utf-8")

    async def aclose(self) -> None:
        self._server.close()
        await self._server.wait_closed()


__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "Counter", "Histogram", "Metrics", "MetricsServer"]
