"""The Ray job client (raybake.tools.ray) against endpoints that are not a healthy Ray
dashboard: real sockets on 127.0.0.1, no Ray cluster."""

from __future__ import annotations

import http.server
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import EXAMPLE
from helpers import http_server, raybake

from raybake.errors import ToolError
from raybake.tools.ray import connect


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts every connection and never answers (a hung proxy or dashboard)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in held:
            conn.close()


class HtmlPage(http.server.BaseHTTPRequestHandler):
    """Every request answered with an HTML page (a web server, not a Ray dashboard)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<!doctype html><html><body>Welcome to nginx!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_dashboard_that_never_answers_is_a_bounded_error(monkeypatch):
    monkeypatch.setenv("RAYBAKE_RAY_TIMEOUT", "1")
    with silent_server() as address, pytest.raises(ToolError) as info:
        connect(address)
    assert f"the Ray dashboard at {address} did not answer within 1 s" in info.value.message
    assert "RAYBAKE_RAY_TIMEOUT" in info.value.fix


def test_a_web_page_instead_of_a_dashboard_is_a_clear_error():
    with http_server(HtmlPage) as address, pytest.raises(ToolError) as info:
        connect(address)
    assert f"{address} does not answer as a Ray dashboard" in info.value.message
    assert "8265" in info.value.fix


def test_submit_to_a_web_page_fails_before_building(copy_fixture):
    root = copy_fixture(EXAMPLE)
    with http_server(HtmlPage) as address:
        proc = raybake("submit", "-C", str(root), "--address", address, "--", "python", "main.py", check=False,
                       env={**os.environ, "DOCKER_HOST": "unix:///nonexistent", "RAY_ADDRESS": ""})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "does not answer as a Ray dashboard" in proc.stderr and "fix:" in proc.stderr
    assert "Docker" not in proc.stderr and "Traceback" not in proc.stderr  # before any build
