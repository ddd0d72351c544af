"""The HTTP port for operators and orchestrators: /metrics, /healthz, /readyz, /status."""
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from consumer.config import ConfigError
from consumer.health import Probes

log = logging.getLogger("schedule_consumer.http")

# (status, content type, body)
Response = tuple[int, str, bytes]


def _json(status: int, body: dict[str, Any]) -> Response:
    return status, "application/json", json.dumps(body, default=str).encode()


def _check(check: Callable[[], tuple[bool, dict[str, Any]]]) -> Callable[[str], Response]:
    def answer(accept: str) -> Response:
        ok, body = check()
        return _json(200 if ok else 503, {"status": "ok" if ok else "unavailable", **body})

    return answer


# The paths orchestrators probe; deploy/ names them too.
LIVENESS, READINESS = "/healthz", "/readyz"


class Endpoints:
    def __init__(self, port: int, registry: CollectorRegistry, probes: Probes) -> None:
        def metrics(accept: str) -> Response:
            encode, content_type = choose_encoder(accept)
            return 200, content_type, encode(registry)

        routes: dict[str, Callable[[str], Response]] = {
            "/metrics": metrics,
            LIVENESS: _check(probes.liveness),
            READINESS: _check(probes.readiness),
            "/status": lambda accept: _json(200, probes.status()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(urlsplit(self.path).path)
                if route is None:
                    status, content_type, body = _json(404, {"error": f"no such path; try {', '.join(routes)}"})
                else:
                    try:
                        status, content_type, body = route(self.headers.get("Accept", ""))
                    except Exception as e:
                        log.exception("%s failed", self.path)
                        status, content_type, body = _json(500, {"error": str(e)})
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

        try:
            self.server = ThreadingHTTPServer(("", port), Handler)
        except OSError as e:
            raise ConfigError(f"METRICS_PORT {port}: cannot listen: {e.strerror}") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("serving /metrics, /healthz, /readyz and /status on port %d", self.port)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
