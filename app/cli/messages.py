"""`collab-bus send` and `collab-bus tail`: put a message on the bus, follow a sandbox's mailbox live."""

from __future__ import annotations

import json
import signal
import sys
import time
from urllib.parse import quote

import click

from app.cli.client import Bus, OpsError, bus_command, describe_http_error, reason
from app.cli.output import endpoint, format_entry, json_out, summary, when

MESSAGE_TYPES = ("request", "response", "notification", "command")


EPILOG_SEND = """\b
Examples:
  collab-bus send --from team-a --to team-b '{"task": "find papers on CRDTs"}'
  collab-bus send --from team-a --to team-b --agent planner --type request --priority 8 --wait '{"q": 1}'
  collab-bus send --from team-a --to broadcast '{"status": "sprint started"}'
  echo '{"done": true}' | collab-bus send --from team-b --type response --correlation-id 4f1c… -
"""


@bus_command("send", epilog=EPILOG_SEND)
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
        raise OpsError(f"CONTENT must be a JSON object, got {type(body).__name__}: {summary(body, 60)}")
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
        json_out(accepted)
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
        json_out(report)
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
               f"({endpoint(message['from_sandbox'], message['from_agent'])} → "
               f"{endpoint(message['to_sandbox'], message['to_agent'])}, {message['message_type']}, "
               f"accepted {when(report.get('accepted_at'))}, routed {when(report.get('routed_at'))})")
    for delivery in report.get("deliveries", []):
        click.echo(f"  {delivery['sandbox_id']}: seq {delivery['seq']}, {delivery['state']}, "
                   f"delivered {when(delivery.get('delivered_at'))}"
                   + (f", acked {when(delivery['acked_at'])}" if delivery.get("acked_at") else ""))
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


@bus_command("tail", epilog=EPILOG_TAIL)
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
                            if frame.get("cursor_ahead"):
                                click.echo(f"collab-bus: seq {last_seq} is beyond the mailbox's head seq "
                                           f"{frame.get('head_seq')} (was the bus's data reset?); resuming after "
                                           f"seq {frame.get('resumed_from')}", err=True)
                                last_seq = frame.get("resumed_from", 0)
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
                    raise OpsError(f"cannot reach the bus at {bus.url}: {reason(exc)}") from None
                what = f"cannot reconnect: {reason(exc)}"
            click.echo(f"collab-bus: {what}; reconnecting after seq {last_seq} in {delay:g} s", err=True)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    except (KeyboardInterrupt, _Stop):
        sys.exit(0)
