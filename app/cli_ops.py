"""Operator commands of `collab-bus`: send, tail, sandboxes, dlq, status.

They talk to a running bus over its REST API and WebSockets (httpx, websockets), never to its database, so they
work from any machine that reaches the bus. `status` also asks the Celery workers and the broker configured in
the environment. Every failure is one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import click
import httpx

from app.cli import main
from app.config import ConfigError, Settings

DEFAULT_URL = "http://127.0.0.1:8000"
# The dead-letter reasons of the protocol (docs/protocol.md, `message.dead_lettered`); kept here so the command
# starts without importing the services.
DEAD_LETTER_REASONS = ("recipient_gone", "expired", "max_attempts", "nacked", "undeliverable")
MESSAGE_TYPES = ("request", "response", "notification", "command")
EXIT_DOWN = 1  # the bus does not answer (status), or a call failed
EXIT_DEGRADED = 3  # status: the bus answers, but something it needs does not


class OpsError(click.ClickException):
    """A failure reported as one line, `collab-bus: MESSAGE`, with exit status 1."""

    exit_code = EXIT_DOWN

    def show(self, file=None) -> None:
        click.echo(f"collab-bus: {self.message}", err=True)


def _guard(command):
    """Report anything unexpected as one line (exit 1) instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.exceptions.Exit, click.Abort, click.ClickException, ConfigError, KeyboardInterrupt,
                SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the operator gets one line, not a traceback
            raise OpsError(f"unexpected error: {type(exc).__name__}: {exc}") from None

    return wrapper


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
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise OpsError(f"cannot reach the bus at {self.url}: {_reason(exc)}") from None
        except httpx.TimeoutException:
            raise OpsError(f"the bus at {self.url} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise OpsError(f"request to the bus at {self.url} failed: {_reason(exc)}") from None
        if response.status_code >= 400 and response.status_code not in allow:
            raise OpsError(self.describe_error(response))
        return response

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


def _reason(exc: BaseException) -> str:
    """The innermost cause of a connection error, e.g. `[Errno 111] Connection refused`."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc) or type(exc).__name__


BUS_OPTIONS = [
    click.option("--url", envvar=["COLLAB_BUS_URL", "COLLABORATION_BUS_URL"], default=DEFAULT_URL,
                 show_default=True, help="Base URL of the bus (env COLLAB_BUS_URL, else COLLABORATION_BUS_URL)."),
    click.option("--token", envvar="BUS_TOKEN", default=_default_token, show_default=False,
                 help="Bearer token: an API key or a sandbox token (env BUS_TOKEN; default: the admin key in "
                      "DATA_DIR/admin-api-key when that file exists, DATA_DIR read from the environment as the bus "
                      "does, default ./data)."),
    click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
                 help="Seconds to wait for each answer of the bus."),
]


def bus_command(group, name: str | None = None, **kwargs):
    """A command of `group` with the connection options, building `bus` (a Bus) from them, and errors as one
    line."""

    def decorate(function):
        @functools.wraps(function)
        def with_bus(url: str, token: str | None, timeout: float, **params):
            bus = Bus(url, token, timeout)
            try:
                return function(bus, **params)
            finally:
                bus.http.close()

        command = _guard(with_bus)
        own = list(getattr(function, "__click_params__", []))

        def connection():
            pass

        for option in reversed(BUS_OPTIONS):
            connection = option(connection)
        # click shows parameters in reverse order of this list: the command's own options first, then these.
        command.__click_params__ = connection.__click_params__ + own
        return group.command(name, **kwargs)(command)

    return decorate


# --- formatting ---------------------------------------------------------------------------------------------------

def _json_out(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _when(stamp) -> str:
    """A unix time (float) or an ISO 8601 string as `YYYY-MM-DD HH:MM:SS` (local time for unix times)."""
    if stamp is None or stamp == "":
        return "-"
    if isinstance(stamp, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    return str(stamp)[:19].replace("T", " ")


def _summary(content, width: int = 160) -> str:
    text = json.dumps(content, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= width else text[:width - 1] + "…"


def _table(headers: list[str], rows: list[list], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    click.echo(fmt(headers))
    for row in cells:
        click.echo(fmt(row))


def _endpoint(sandbox, agent) -> str:
    return f"{sandbox}/{agent}" if agent and agent != "any" else str(sandbox)


def format_entry(frame: dict) -> str:
    """A mailbox `message` frame as a line block: seq, time, from → to, type, then the content summary."""
    msg = frame.get("message") or {}
    extras = [f"priority {msg.get('priority')}"]
    if msg.get("correlation_id"):
        extras.append(f"correlation {msg['correlation_id']}")
    if msg.get("requires_response"):
        extras.append("requires response")
    if frame.get("redelivered"):
        extras.append(f"redelivered, attempt {frame.get('attempt')}")
    head = (f"#{frame.get('seq', '-')}  {_when(msg.get('timestamp'))}  "
            f"{_endpoint(msg.get('from_sandbox'), msg.get('from_agent'))} → "
            f"{_endpoint(msg.get('to_sandbox'), msg.get('to_agent'))}  {msg.get('message_type')}  "
            f"({', '.join(extras)})  id {msg.get('message_id')}")
    return f"{head}\n    {_summary(msg.get('content'))}"


# --- send ---------------------------------------------------------------------------------------------------------

EPILOG_SEND = """\b
Examples:
  collab-bus send --from team-a --to team-b '{"task": "find papers on CRDTs"}'
  collab-bus send --from team-a --to team-b --agent planner --type request --priority 8 --wait '{"q": 1}'
  collab-bus send --from team-a --to broadcast '{"status": "sprint started"}'
  echo '{"done": true}' | collab-bus send --from team-b --type response --correlation-id 4f1c… -
"""


@bus_command(main, "send", epilog=EPILOG_SEND)
@click.option("--from", "from_sandbox", required=True, metavar="SANDBOX", help="The sending sandbox.")
@click.option("--to", "to_sandbox", metavar="SANDBOX|broadcast",
              help="The recipient sandbox, or `broadcast` (every other sandbox of the sender's workspace). "
                   "May be left out for a response with --correlation-id: it goes back to the requester.")
@click.option("--agent", "from_agent", default="cli", show_default=True, metavar="NAME",
              help="The sending agent's name.")
@click.option("--to-agent", default="any", show_default=True, metavar="NAME", help="The target agent.")
@click.option("--type", "message_type", type=click.Choice(MESSAGE_TYPES), default="notification", show_default=True,
              help="Message type (request and command must be acknowledged by the recipient).")
@click.option("--priority", type=click.IntRange(0, 9), default=5, show_default=True, help="0-9, 9 highest.")
@click.option("--ttl", type=click.IntRange(1, 2592000), metavar="S",
              help="Seconds before the message is dead-lettered `expired`.")
@click.option("--correlation-id", metavar="ID", help="Ties a response to its request.")
@click.option("--requires-response", is_flag=True, help="Tell the recipient a response is expected.")
@click.option("--idempotency-key", metavar="KEY", help="Send it once even when the command is retried.")
@click.option("--wait", is_flag=True, help="Wait until the message is delivered (or dead) and print its report.")
@click.option("--wait-timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds --wait waits.")
@click.option("--json", "as_json", is_flag=True, help="Print the bus's answers as JSON.")
@click.argument("content", metavar="CONTENT")
def send(bus: Bus, from_sandbox: str, to_sandbox: str | None, from_agent: str, to_agent: str, message_type: str,
         priority: int, ttl: int | None, correlation_id: str | None, requires_response: bool,
         idempotency_key: str | None, wait: bool, wait_timeout: float, as_json: bool, content: str) -> None:
    """Send a message with CONTENT, a JSON object (`-` reads it from stdin); print its message id.

    With --wait, also wait until it sits in every recipient's mailbox (status `delivered`) or was dead-lettered,
    and print the delivery report; exit status 1 when it was dead-lettered or --wait-timeout passed.
    """
    raw = sys.stdin.read() if content == "-" else content
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise OpsError(f"CONTENT is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise OpsError(f"CONTENT must be a JSON object, got {type(body).__name__}: {_summary(body, 60)}")
    if not to_sandbox and not (message_type == "response" and correlation_id):
        raise click.UsageError("--to is required (except for --type response with --correlation-id)")
    message = {"from_sandbox": from_sandbox, "from_agent": from_agent, "to_agent": to_agent,
               "message_type": message_type, "content": body, "priority": priority,
               "requires_response": requires_response}
    if to_sandbox:
        message["to_sandbox"] = to_sandbox
    if ttl is not None:
        message["ttl"] = ttl
    if correlation_id:
        message["correlation_id"] = correlation_id
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    accepted = bus.request("POST", "/api/v1/messages", json=message, headers=headers).json()
    message_id = accepted["message_id"]
    if as_json and not wait:
        _json_out(accepted)
        return
    if not as_json:
        click.echo(message_id)
    if not wait:
        return
    deadline = time.monotonic() + wait_timeout
    while True:
        report = bus.get(f"/api/v1/messages/{quote(message_id, safe='')}")
        if report["status"] != "accepted" or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if as_json:
        _json_out(report)
    else:
        _print_report(report)
    if report["status"] == "accepted":
        raise OpsError(f"message {message_id} not delivered within {wait_timeout:g} s (still `accepted`: "
                       "is a worker running?)")
    if report["status"] == "dead":
        raise OpsError(f"message {message_id} was dead-lettered")


def _print_report(report: dict) -> None:
    message = report["message"]
    click.echo(f"message {message['message_id']}: {report['status']}  "
               f"({_endpoint(message['from_sandbox'], message['from_agent'])} → "
               f"{_endpoint(message['to_sandbox'], message['to_agent'])}, {message['message_type']}, "
               f"accepted {_when(report.get('accepted_at'))}, routed {_when(report.get('routed_at'))})")
    for delivery in report.get("deliveries", []):
        click.echo(f"  {delivery['sandbox_id']}: seq {delivery['seq']}, {delivery['state']}, "
                   f"delivered {_when(delivery.get('delivered_at'))}"
                   + (f", acked {_when(delivery['acked_at'])}" if delivery.get("acked_at") else ""))
    if not report.get("deliveries") and report["status"] == "delivered":
        click.echo("  no recipient (a broadcast that found no other sandbox)")
    for dead in report.get("dead_letters", []):
        click.echo(f"  dead-lettered for {dead.get('sandbox_id') or '(broadcast)'}: {dead['reason']}"
                   + (f" ({dead['last_error']})" if dead.get("last_error") else ""))
    if report.get("response_state"):
        click.echo(f"  response: {report['response_state']}")


# --- tail ---------------------------------------------------------------------------------------------------------

EPILOG_TAIL = """\b
Examples:
  collab-bus tail team-b                 # every entry of team-b's mailbox, then live ones; Ctrl-C stops
  collab-bus tail team-b --since 41      # only entries after seq 41
  collab-bus tail team-b --json | jq .   # the raw frames
  collab-bus tail team-b --ack           # acknowledge each entry (act as the sandbox's consumer)
"""


class _Stop(Exception):
    """Ctrl-C or SIGTERM: leave tail with status 0."""


@bus_command(main, "tail", epilog=EPILOG_TAIL)
@click.argument("sandbox")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start after this seq (0: the whole mailbox).")
@click.option("--ack", is_flag=True, help="Acknowledge every entry after printing it.")
@click.option("--json", "as_json", is_flag=True, help="Print each frame as the bus sent it (one JSON per line).")
def tail(bus: Bus, sandbox: str, since: int, ack: bool, as_json: bool) -> None:
    """Follow the mailbox of SANDBOX live over its WebSocket: replay after --since, then new entries.

    Each entry is printed as a block: seq, time, from → to, type, then a summary of its content. When the
    connection drops, tail says so on stderr and reconnects after the last seq it printed. Ctrl-C exits 0.

    While tail holds the socket the sandbox counts as connected: unacknowledged request/command entries are pushed
    again after ACK_TIMEOUT and use up delivery attempts, unless --ack acknowledges them.
    """
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
    from websockets.sync.client import connect

    def stop(*_):
        raise _Stop()

    signal.signal(signal.SIGTERM, stop)
    last_seq = since
    delay = 0.5
    connected_once = False
    try:
        while True:
            url = f"{bus.ws_url}/ws/sandboxes/{quote(sandbox, safe='')}?since={last_seq}"
            headers = {"Authorization": f"Bearer {bus.token}"} if bus.token else None
            welcomed, refusal = False, None
            try:
                with connect(url, additional_headers=headers, open_timeout=bus.timeout, close_timeout=1,
                             max_size=None) as ws:
                    while True:
                        try:
                            raw = ws.recv(timeout=1.0)
                        except TimeoutError:
                            continue
                        frame = json.loads(raw)
                        kind = frame.get("type")
                        if kind == "welcome":
                            connected_once, welcomed, delay = True, True, 0.5
                            click.echo(f"tailing mailbox {sandbox} at {bus.url} after seq {last_seq} "
                                       f"(head seq {frame.get('head_seq')}; Ctrl-C stops)", err=True)
                        if as_json:
                            click.echo(raw if isinstance(raw, str) else raw.decode())
                        if kind == "message" and isinstance(frame.get("seq"), int):
                            if not as_json:
                                click.echo(format_entry(frame))
                            last_seq = max(last_seq, frame["seq"])
                            if ack:
                                ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
                        elif kind == "error":
                            if not welcomed:  # the handshake was refused: a 1008 close follows
                                refusal = f"{frame.get('code')}: {frame.get('message')}"
                            elif not as_json:
                                click.echo(f"collab-bus: the bus reported {frame.get('code')}: "
                                           f"{frame.get('message')}", err=True)
            except InvalidStatus as exc:
                response = exc.response
                raise OpsError(describe_http_error(response.status_code, response.body or b"",
                                                   bus.token is not None)) from None
            except ConnectionClosed as exc:
                received = exc.rcvd
                if received is not None and received.code == 1008:
                    raise OpsError(f"the bus refused the mailbox socket of {sandbox}: "
                                   f"{refusal or received.reason or 'policy violation'}") from None
                what = f"connection lost ({received.code} {received.reason})".rstrip() if received else \
                    "connection lost"
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                if not connected_once:
                    raise OpsError(f"cannot reach the bus at {bus.url}: {_reason(exc)}") from None
                what = f"cannot reconnect: {_reason(exc)}"
            click.echo(f"collab-bus: {what}; reconnecting after seq {last_seq} in {delay:g} s", err=True)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    except (KeyboardInterrupt, _Stop):
        sys.exit(0)


# --- sandboxes ----------------------------------------------------------------------------------------------------

@main.group(epilog="""\b
Examples:
  collab-bus sandboxes list
  collab-bus sandboxes list --workspace team-a --status online
""")
def sandboxes() -> None:
    """Registered sandboxes."""


@bus_command(sandboxes, "list", epilog="""\b
Examples:
  collab-bus sandboxes list
  collab-bus sandboxes list --workspace team-a --status online
  collab-bus sandboxes list --status unregistered --json
""")
@click.option("--workspace", help="Only this workspace.")
@click.option("--status", type=click.Choice(("online", "offline", "unregistered")), help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Print the bus's answer as JSON.")
def sandboxes_list(bus: Bus, workspace: str | None, status: str | None, as_json: bool) -> None:
    """List sandboxes: id, workspace, status, agents, head and settled seq, last heartbeat."""
    params = {key: value for key, value in (("workspace", workspace), ("status", status)) if value}
    answer = bus.get("/api/v1/sandboxes", params=params)
    if as_json:
        _json_out(answer)
        return
    rows = [[s["sandbox_id"], s["workspace"], s["status"], ",".join(a["name"] for a in s.get("agents", [])) or "-",
             s.get("head_seq", "-"), s.get("settled_seq", "-"), _when(s.get("last_heartbeat"))]
            for s in answer["sandboxes"]]
    _table(["SANDBOX", "WORKSPACE", "STATUS", "AGENTS", "HEAD", "SETTLED", "LAST HEARTBEAT"], rows,
           "no sandboxes")


# --- dead letters -------------------------------------------------------------------------------------------------

@main.group(epilog="""\b
Examples:
  collab-bus dlq list --reason nacked
  collab-bus dlq show 17
  collab-bus dlq replay 17 18
  collab-bus dlq replay --sandbox team-b --yes
  collab-bus dlq purge --reason expired --yes
""")
def dlq() -> None:
    """The dead-letter queue: list, show, replay and purge dead letters."""


REASON_OPTION = click.option("--reason", type=click.Choice(DEAD_LETTER_REASONS), help="Only this reason.")
SANDBOX_OPTION = click.option("--sandbox", "sandbox_id", metavar="SANDBOX", help="Only this recipient sandbox.")


def _filter(reason: str | None, sandbox_id: str | None) -> dict:
    return {key: value for key, value in (("reason", reason), ("sandbox_id", sandbox_id)) if value}


def _describe_filter(where: dict) -> str:
    return ", ".join(f"{k.replace('_id', '')} {v}" for k, v in where.items()) or "all"


@bus_command(dlq, "list", epilog="""\b
Examples:
  collab-bus dlq list
  collab-bus dlq list --reason max_attempts --sandbox team-b --limit 500
  collab-bus dlq list --json
""")
@REASON_OPTION
@SANDBOX_OPTION
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Show at most this many (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
def dlq_list(bus: Bus, reason: str | None, sandbox_id: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, oldest first: id, when, reason, sandbox, attempts, message, last error."""
    where = _filter(reason, sandbox_id)
    items: list[dict] = []
    after, total = 0, 0
    while len(items) < limit:
        page = bus.get("/api/v1/dead-letters", params={**where, "after": after, "limit": min(1000, limit - len(items))})
        items += page["dead_letters"]
        total = page["total"]
        if page.get("next_after") is None:
            break
        after = page["next_after"]
    if as_json:
        _json_out({"dead_letters": items, "count": len(items), "total": total})
        return
    rows = [[d["id"], _when(d["created_at"]), d["reason"], d["sandbox_id"] or "(broadcast)", d["attempts"],
             d["message_id"], _summary(d.get("last_error") or "", 60).strip('"')] for d in items]
    _table(["ID", "DEAD-LETTERED", "REASON", "SANDBOX", "ATTEMPTS", "MESSAGE", "LAST ERROR"], rows,
           "no dead letters" + ("" if not where else f" ({_describe_filter(where)})"))
    if items and total > len(items):
        click.echo(f"({len(items)} of {total}; --limit shows more)")


@bus_command(dlq, "show", epilog="""\b
Examples:
  collab-bus dlq show 17
  collab-bus dlq show 17 --json
""")
@click.argument("dead_letter_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def dlq_show(bus: Bus, dead_letter_id: int, as_json: bool) -> None:
    """Show dead letter ID with its message."""
    dead = bus.get(f"/api/v1/dead-letters/{dead_letter_id}")
    if as_json:
        _json_out(dead)
        return
    message = dead.get("message") or {}
    for label, value in (("dead letter", dead["id"]), ("reason", dead["reason"]),
                         ("sandbox", dead["sandbox_id"] or "(broadcast)"), ("attempts", dead["attempts"]),
                         ("last error", dead.get("last_error") or "-"), ("dead-lettered", _when(dead["created_at"])),
                         ("message", dead["message_id"])):
        click.echo(f"{label + ':':<15}{value}")
    if message:
        click.echo(f"{'from → to:':<15}{_endpoint(message['from_sandbox'], message['from_agent'])} → "
                   f"{_endpoint(message['to_sandbox'], message['to_agent'])}")
        click.echo(f"{'type:':<15}{message['message_type']} (priority {message['priority']}, "
                   f"sent {_when(message.get('timestamp'))})")
        click.echo(f"{'content:':<15}{json.dumps(message['content'], ensure_ascii=False)}")


def _count(bus: Bus, where: dict) -> int:
    return bus.get("/api/v1/dead-letters", params={**where, "limit": 1})["total"]


@bus_command(dlq, "replay", epilog="""\b
Examples:
  collab-bus dlq replay 17 18 19           # these dead letters
  collab-bus dlq replay --reason nacked    # every nacked one (asks first)
  collab-bus dlq replay --sandbox team-b --yes
  collab-bus dlq replay --all --yes
""")
@click.argument("ids", metavar="[ID]...", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@REASON_OPTION
@SANDBOX_OPTION
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def dlq_replay(bus: Bus, ids: tuple[int, ...], replay_all: bool, reason: str | None, sandbox_id: str | None,
               yes: bool) -> None:
    """Send dead letters back through delivery as a new attempt series (they leave the dead letters).

    Give IDs, or select by --reason and/or --sandbox, or --all. A selection is counted and confirmed first
    (unless --yes) and replayed page by page with a progress bar.
    """
    where = _filter(reason, sandbox_id)
    if ids and (where or replay_all):
        raise click.UsageError("give dead-letter IDs or a selection (--all, --reason, --sandbox), not both")
    if not ids and not where and not replay_all:
        raise click.UsageError("say which: dead-letter IDs, --reason, --sandbox or --all")
    if ids:
        if len(ids) > 1 and not yes:
            click.confirm(f"Replay {len(ids)} dead letters?", abort=True)
        failed = 0
        for dead_letter_id in ids:
            response = bus.request("POST", f"/api/v1/dead-letters/{dead_letter_id}/replay", allow=(404, 409))
            if response.status_code >= 400:
                failed += 1
                click.echo(f"collab-bus: dead letter {dead_letter_id}: {bus.describe_error(response)}", err=True)
                continue
            outcome = response.json()
            click.echo(f"replayed dead letter {dead_letter_id} (message {outcome['message_id']} to "
                       f"{outcome.get('sandbox_id') or 'broadcast'}, {outcome.get('redelivery')})")
        if failed:
            raise OpsError(f"{failed} of {len(ids)} dead letters not replayed")
        return
    total = _count(bus, where)
    if total == 0:
        click.echo(f"no dead letters to replay ({_describe_filter(where)})")
        return
    if not yes:
        click.confirm(f"Replay {total} dead letter{'s' if total != 1 else ''} ({_describe_filter(where)})?",
                      abort=True)
    done = 0
    with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
        while done < total:  # bounded: letters that die again at once match the filter again
            answer = bus.request("POST", "/api/v1/dead-letters/replay",
                                 json={**where, "limit": min(100, total - done)}).json()
            if answer["replayed"] == 0:
                break
            done += answer["replayed"]
            bar.update(answer["replayed"])
    click.echo(f"replayed {done} dead letter{'s' if done != 1 else ''}")


@bus_command(dlq, "purge", epilog="""\b
Examples:
  collab-bus dlq purge --reason expired          # asks first
  collab-bus dlq purge --sandbox team-b --yes
  collab-bus dlq purge --all --yes
""")
@click.option("--all", "purge_all", is_flag=True, help="Purge every dead letter.")
@REASON_OPTION
@SANDBOX_OPTION
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def dlq_purge(bus: Bus, purge_all: bool, reason: str | None, sandbox_id: str | None, yes: bool) -> None:
    """Delete dead letters for good (their messages stay): those of --reason and/or --sandbox, or --all.

    The matching dead letters are counted and the purge confirmed first, unless --yes.
    """
    where = _filter(reason, sandbox_id)
    if not where and not purge_all:
        raise click.UsageError("say which: --reason, --sandbox or --all")
    if where and purge_all:
        raise click.UsageError("--all purges everything: leave out --reason and --sandbox")
    total = _count(bus, where)
    if total == 0:
        click.echo(f"no dead letters to purge ({_describe_filter(where)})")
        return
    if not yes:
        click.confirm(f"Purge {total} dead letter{'s' if total != 1 else ''} ({_describe_filter(where)})? "
                      "This cannot be undone", abort=True)
    params = where if where else {"all": "true"}
    purged = bus.request("DELETE", "/api/v1/dead-letters", params=params).json()["purged"]
    click.echo(f"purged {purged} dead letter{'s' if purged != 1 else ''}")


# --- status -------------------------------------------------------------------------------------------------------

EPILOG_STATUS = """\b
Examples:
  collab-bus status
  MESSAGE_BACKEND=redis REDIS_URL=redis://10.0.0.5:6379/0 collab-bus status --url http://10.0.0.5:8000
  collab-bus status --json

\b
Exit status: 0 all is well; 1 the bus does not answer; 3 the bus answers but is not ready, a call was
refused, the broker is unreachable or no worker answered.
"""


def _safe_broker_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _workers(timeout: float) -> dict:
    """Celery workers answering ping within `timeout`, with the queues each consumes."""
    from workers.celery_app import celery_app

    pongs = celery_app.control.inspect(timeout=timeout).ping() or {}
    queues = {}
    if pongs:  # ask exactly those: the answer comes as soon as each has replied
        queues = celery_app.control.inspect(timeout=timeout, destination=list(pongs), limit=len(pongs)
                                            ).active_queues() or {}
    return {name: sorted(q["name"] for q in queues.get(name, [])) for name in sorted(pongs)}


@bus_command(main, "status", epilog=EPILOG_STATUS)
@click.option("--inspect-timeout", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds to wait for Celery workers to answer ping.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def status(bus: Bus, inspect_timeout: float, as_json: bool) -> None:
    """The bus at a glance: API health and readiness, sandboxes, dead letters, broker, workers, queue depths.

    The API is asked over --url; the broker and the Celery workers are those of the environment (MESSAGE_BACKEND,
    REDIS_URL, RABBITMQ_URL, BROKER_URL), as `collab-bus worker` would use them.
    """
    report: dict = {"url": bus.url}
    problems: list[str] = []
    lines: list[tuple[str, str]] = []

    # The API itself: down is fatal.
    try:
        health = bus.request("GET", "/healthz")
    except OpsError as exc:
        if as_json:
            _json_out({**report, "up": False, "error": exc.message})
        raise OpsError(f"bus DOWN: {exc.message}") from None
    report["up"] = True
    lines.append(("bus", f"{bus.url} up ({health.json().get('status', 'ok')})"))

    ready = bus.request("GET", "/readyz", allow=tuple(range(400, 600)))
    if ready.status_code == 404:
        report["ready"] = None
        lines.append(("ready", "no /readyz on this bus"))
    else:
        try:
            detail = ready.json()
        except ValueError:
            detail = {"status": ready.text.strip()[:100]}
        report["ready"] = ready.status_code == 200
        report["readiness"] = detail
        text = "ready" if ready.status_code == 200 else f"NOT READY ({ready.status_code})"
        checks = None
        if isinstance(detail, dict):  # 200 {"status", "checks"}; 503 an error body with the checks as details
            error = detail.get("error") if isinstance(detail.get("error"), dict) else {}
            checks = detail.get("checks") or error.get("details")
            if error.get("message"):
                text += f" {error['message']}"
        if isinstance(checks, dict) and checks:
            text += ": " + ", ".join(f"{k} {v if not isinstance(v, dict) else v.get('status', v)}"
                                     for k, v in checks.items())
        lines.append(("ready", text))
        if ready.status_code != 200:
            problems.append("not ready")

    # What the API knows (needs a token that may read sandboxes and dead letters).
    try:
        listed = bus.get("/api/v1/sandboxes")["sandboxes"]
        online = sum(1 for s in listed if s["status"] == "online")
        report["sandboxes"] = {"registered": len(listed), "online": online}
        lines.append(("sandboxes", f"{len(listed)} registered, {online} online"))
    except OpsError as exc:
        report["sandboxes"] = {"error": exc.message}
        lines.append(("sandboxes", f"unknown: {exc.message}"))
        problems.append("sandboxes")
    try:
        dead = _count(bus, {})
        report["dead_letters"] = dead
        lines.append(("dead letters", str(dead)))
    except OpsError as exc:
        report["dead_letters"] = {"error": exc.message}
        lines.append(("dead letters", f"unknown: {exc.message}"))
        problems.append("dead letters")

    # The broker and workers of the environment.
    from app.broker import broker_reachable, queue_report

    settings = Settings.from_env()
    kind = settings.broker_kind
    report["broker"] = {"kind": kind, "url": _safe_broker_url(settings.broker_url)}
    if kind == "memory":
        lines.append(("broker", "in-memory (MESSAGE_BACKEND=memory): embedded worker (in the API process)"))
        report["workers"] = "embedded"
    else:
        try:
            broker_reachable(settings, inspect_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to connect is reported as one line
            report["broker"]["reachable"] = False
            report["broker"]["error"] = _reason(exc)
            lines.append(("broker", f"{kind} {_safe_broker_url(settings.broker_url)} UNREACHABLE: {_reason(exc)}"))
            problems.append("broker")
        else:
            report["broker"]["reachable"] = True
            lines.append(("broker", f"{kind} {_safe_broker_url(settings.broker_url)} reachable"))
            try:
                workers = _workers(inspect_timeout)
            except Exception as exc:  # noqa: BLE001
                workers = {}
                lines.append(("workers", f"inspect failed: {_reason(exc)}"))
            report["workers"] = workers
            if workers:
                lines.append(("workers", f"{len(workers)} answered ping"))
                for name, queues in workers.items():
                    lines.append(("", f"{name}: consumes {', '.join(queues) or '(no queue)'}"))
            else:
                lines.append(("workers", f"NONE answered ping within {inspect_timeout:g} s"))
                problems.append("workers")
            try:
                depths = queue_report(settings, inspect_timeout)
                report["queue_depths"] = depths
                for queue, depth in depths["queues"].items():
                    if depth is None:
                        text = "not declared yet"
                    else:
                        text = f"{depth['messages']} waiting"
                        if depth.get("by_priority_step"):
                            text += " (by priority step: " + ", ".join(
                                f"{step} {n}" for step, n in depth["by_priority_step"].items()) + ")"
                        if "consumers" in depth:
                            text += f", {depth['consumers']} consumer{'s' if depth['consumers'] != 1 else ''}"
                    lines.append((f"queue {queue}", text))
                if "unacked" in depths:
                    lines.append(("in progress", f"{depths['unacked']} task(s) taken by workers, not yet acknowledged"))
            except Exception as exc:  # noqa: BLE001
                lines.append(("queues", f"depths unavailable: {_reason(exc)}"))
    report["problems"] = problems
    if as_json:
        _json_out(report)
    else:
        width = max(len(label) for label, _ in lines) + 2
        for label, text in lines:
            click.echo(f"{(label + ':') if label else '':<{width}}{text}")
        if problems:
            click.echo(f"DEGRADED: {', '.join(problems)}")
    if problems:
        sys.exit(EXIT_DEGRADED)
