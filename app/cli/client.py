"""The HTTP client of the operator commands: a running bus reached over its REST API (httpx), its connection
options (--url, --token, --timeout), and failures reported as one line on stderr with a non-zero exit status."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
import httpx

from app.cli.errors import Failure
from app.config import ConfigError, Settings

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_DOWN = 1  # the bus does not answer (status), or a call failed


class OpsError(Failure):
    """A failure of an operator command: `collab-bus: MESSAGE`, exit status 1."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_DOWN)


# --- connection options -------------------------------------------------------------------------------------------

def _data_dir() -> Path:
    """DATA_DIR as the bus reads it (app.config.Settings; its default `data` when unset or unreadable)."""
    try:
        return Settings.from_env().data_dir
    except ConfigError:
        return Path(os.environ.get("DATA_DIR") or Settings.data_dir)


def _default_token() -> str | None:
    """The admin key that the first start of `collab-bus up` / `api` wrote to DATA_DIR/admin-api-key, if any."""
    path = _data_dir() / "admin-api-key"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class Bus:
    """A running bus, reached at `url` with bearer `token`: REST calls whose failures become OpsError lines."""

    def __init__(self, url: str, token: str | None, timeout: float):
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = f"http://{url}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter(f"{url!r} is not an http:// or https:// URL", param_hint="--url")
        self.url = url
        self.token = token
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path, "", ""))

    def request(self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs) -> httpx.Response:
        """Send one request; raise OpsError (one line) when the bus cannot be reached or answers an error,
        except for the statuses in `allow`."""
        with self._reporting_failures():
            response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400 and response.status_code not in allow:
            raise OpsError(self.describe_error(response))
        return response

    def stream_lines(self, path: str, on_line, **kwargs) -> None:
        """GET `path` and hand each line of the answer to `on_line` as it arrives, until the bus ends it (no read
        timeout: a followed stream may be quiet for long); failures as in `request`."""
        with self._reporting_failures(), self.http.stream("GET", path, timeout=httpx.Timeout(self.timeout, read=None),
                                                          **kwargs) as response:
            if response.status_code >= 400:
                response.read()
                raise OpsError(self.describe_error(response))
            for line in response.iter_lines():
                on_line(line)

    @contextlib.contextmanager
    def _reporting_failures(self):
        try:
            yield
        except httpx.ConnectError as exc:
            raise OpsError(f"cannot reach the bus at {self.url}: {reason(exc)}") from None
        except httpx.TimeoutException:
            raise OpsError(f"the bus at {self.url} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise OpsError(f"request to the bus at {self.url} failed: {reason(exc)}") from None

    def get(self, path: str, **kwargs) -> dict:
        return self.request("GET", path, **kwargs).json()

    def describe_error(self, response: httpx.Response) -> str:
        """One line for an error answer: status, the server's error code and message, and a hint."""
        return describe_http_error(response.status_code, response.content, self.token is not None)


def describe_http_error(status: int, body: bytes, have_token: bool) -> str:
    """`401 unauthorized: MESSAGE (hint)` from an error body of the bus (docs/protocol.md §2), or the body's first
    line when it is not one."""
    code = message = None
    try:
        error = json.loads(body)["error"]
        code, message = error.get("code"), error.get("message")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    if not message:
        text = body.decode("utf-8", "replace").strip().splitlines()
        message = text[0][:200] if text else "(empty answer)"
    line = f"the bus answered {status}{' ' + code if code else ''}: {message}"
    if status == 401:
        line += (" (pass a valid key with --token or BUS_TOKEN)" if have_token else
                 " (no token: pass --token or set BUS_TOKEN; the admin key is in DATA_DIR/admin-api-key)")
    elif status == 403 and code == "forbidden":
        line += " (this key's role may not do this: use an operator or admin key)"
    return line


def reason(exc: BaseException) -> str:
    """The innermost cause of a connection error, e.g. `[Errno 111] Connection refused`."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc) or type(exc).__name__


BUS_OPTIONS = [
    click.option("--url", envvar=["COLLABORATION_BUS_URL", "COLLAB_BUS_URL"], default=DEFAULT_URL,
                 show_default=True, help="Base URL of the bus (env COLLABORATION_BUS_URL, as for the SDK and the "
                                         "examples; COLLAB_BUS_URL is read too)."),
    click.option("--token", envvar="BUS_TOKEN", default=_default_token, show_default=False,
                 help="Bearer token: an API key or a sandbox token (env BUS_TOKEN; default: the admin key in "
                      "DATA_DIR/admin-api-key when that file exists, DATA_DIR read from the environment as the bus "
                      "does, default ./data)."),
    click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
                 help="Seconds to wait for each answer of the bus."),
]


def bus_command(name: str | None = None, group: click.Group | None = None, **kwargs):
    """A command (of `group`, when given) with the connection options, building `bus` (a Bus) from them (its
    failures are one line, as every command's: app.cli.errors)."""

    def decorate(function):
        @functools.wraps(function)
        def with_bus(url: str, token: str | None, timeout: float, **params):
            bus = Bus(url, token, timeout)
            try:
                return function(bus, **params)
            finally:
                bus.http.close()

        command = with_bus
        own = list(getattr(function, "__click_params__", []))

        def connection():
            pass

        for option in reversed(BUS_OPTIONS):
            connection = option(connection)
        # click shows parameters in reverse order of this list: the command's own options first, then these.
        command.__click_params__ = connection.__click_params__ + own
        return (group.command if group else click.command)(name, **kwargs)(command)

    return decorate
