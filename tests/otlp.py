"""An OTLP/HTTP trace receiver on a free loopback port: what Jaeger or a collector would
receive, decoded with opentelemetry-proto. Used by the tracing tests and bench."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(any_value) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    service: str
    attributes: dict[str, Any]
    status: int  # 0 unset, 1 ok, 2 error
    status_message: str
    start_ns: int
    end_ns: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def texts(self) -> list[str]:
        """Every string this span carries out of the process."""
        out = [self.name, self.status_message]
        for attrs in [self.attributes, *(a for _, a in self.events)]:
            for key, value in attrs.items():
                out += [key, repr(value)]
        out += [name for name, _ in self.events]
        return out


class Receiver:
    """Decodes what it receives; with `raw_dir`, only writes each body to a file there
    (a receiver in its own process that costs the measured ones as little as a collector
    would), for `load()` to decode afterwards."""

    def __init__(self, raw_dir: Path | None = None):
        self.spans: list[Span] = []
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.raw_dir = raw_dir
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if receiver.raw_dir is not None:
                    with receiver._lock:
                        receiver.requests.append(dict(self.headers))
                        name = f"{len(receiver.requests):08d}.pb"
                    (receiver.raw_dir / name).write_bytes(body)
                else:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver._add(request, dict(self.headers))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self._handler = Handler
        self.endpoint = ""

    def __enter__(self) -> Receiver:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, **extra: str) -> dict[str, str]:
        """The standard variables that point a process at this receiver, exporting fast."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            **extra,
        }

    def _add(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    spans.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=KINDS.get(s.kind, str(s.kind)),
                            service=str(resource.get("service.name", "")),
                            attributes={kv.key: _value(kv.value) for kv in s.attributes},
                            status=s.status.code,
                            status_message=s.status.message,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            events=[
                                (e.name, {kv.key: _value(kv.value) for kv in e.attributes})
                                for e in s.events
                            ],
                            links=[(lk.trace_id.hex(), lk.span_id.hex()) for lk in s.links],
                            resource=resource,
                        )
                    )
        with self._lock:
            self.spans.extend(spans)
            self.requests.append(headers)

    def load(self, raw_dir: Path) -> None:
        """Decode the bodies a raw receiver wrote."""
        for path in sorted(raw_dir.glob("*.pb")):
            request = ExportTraceServiceRequest()
            request.ParseFromString(path.read_bytes())
            self._add(request, {})

    def all(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def named(self, name: str) -> list[Span]:
        return [s for s in self.all() if s.name == name]

    def trace(self, trace_id: str) -> list[Span]:
        return sorted((s for s in self.all() if s.trace_id == trace_id), key=lambda s: s.start_ns)

    def wait_for(
        self, predicate: Callable[[Span], bool], timeout: float = 30.0, what: str = "a span"
    ) -> Span:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in self.all():
                if predicate(s):
                    return s
            time.sleep(0.1)
        names = sorted({s.name for s in self.all()})
        raise AssertionError(f"no {what} arrived in {timeout} s; spans seen: {names}")

    def tree(self, trace_id: str, attributes: tuple[str, ...] = ()) -> str:
        """The trace as an indented tree, as a trace viewer lays it out."""
        spans = self.trace(trace_id)
        ids = {s.span_id for s in spans}
        children: dict[str, list[Span]] = {}
        for s in spans:
            children.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)
        start = min((s.start_ns for s in spans), default=0)
        lines: list[str] = []

        def walk(parent: str, depth: int) -> None:
            for s in children.get(parent, []):
                shown = " ".join(f"{k}={s.attributes[k]}" for k in attributes if k in s.attributes)
                offset = (s.start_ns - start) / 1e6
                lines.append(
                    f"{offset:9.1f} ms {s.duration_ms:9.1f} ms  {'  ' * depth}{s.name}"
                    f"  [{s.service}]{' ' + shown if shown else ''}"
                    f"{'  ERROR' if s.status == 2 else ''}"
                )
                walk(s.span_id, depth + 1)

        walk("", 0)
        return "\n".join(lines)


if __name__ == "__main__":
    # python -m tests.otlp DIR: a raw receiver in a process of its own; prints its endpoint.
    import sys

    with Receiver(raw_dir=Path(sys.argv[1])) as raw:
        print(raw.endpoint, flush=True)
        threading.Event().wait()
