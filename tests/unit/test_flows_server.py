"""PREFECT_API_URL is checked before any flow starts: malformed is exit 2, a server that does
not answer is exit 75 naming it, an HTTP server that is not Prefect's API is exit 2."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlcore.errors import ConfigError, RetryableError
from mlcore.flows._server import check_prefect_server
from tests.conftest import free_port


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "http://127.0.0.1:99999/api",
        "ftp://127.0.0.1/api",
        "http:///api",
        "http://h:x/",
    ],
)
def test_a_malformed_prefect_url_is_a_config_error(url: str) -> None:
    """Review: 'not a url' ended in UnsupportedProtocol, port 99999 in an ExceptionGroup."""
    with pytest.raises(ConfigError) as exc:
        check_prefect_server(url)
    assert exc.value.code == "FLOWS_SERVER_URL_INVALID"
    assert "PREFECT_API_URL" in exc.value.message


def test_an_unreachable_prefect_server_is_retryable_and_named() -> None:
    """Review: a closed port ended `flows serve` in a ConnectError traceback (exit 70) and
    `flows run publish` in RuntimeError 'Failed to reach API'."""
    url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(RetryableError) as exc:
        check_prefect_server(url)
    assert exc.value.code == "FLOWS_SERVER_UNREACHABLE"
    assert url in exc.value.message


class _NotPrefect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_prefect() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _NotPrefect)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/api"
    srv.shutdown()
    srv.server_close()


def test_an_http_server_that_is_not_prefect_is_a_config_error(not_prefect: str) -> None:
    """Review: such a PREFECT_API_URL made `flows serve` hang for more than 90 s."""
    with pytest.raises(ConfigError) as exc:
        check_prefect_server(not_prefect)
    assert exc.value.code == "FLOWS_SERVER_NOT_PREFECT"
    assert not_prefect in exc.value.message
