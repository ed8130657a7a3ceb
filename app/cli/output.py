"""How the operator commands print what the bus answers: JSON, tables, times, message summaries."""

from __future__ import annotations

import json
import time

import click


def json_out(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def when(stamp) -> str:
    """A unix time (float) or an ISO 8601 string as `YYYY-MM-DD HH:MM:SS` (local time for unix times)."""
    if stamp is None or stamp == "":
        return "-"
    if isinstance(stamp, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    return str(stamp)[:19].replace("T", " ")


def summary(content, width: int = 160) -> str:
    text = json.dumps(content, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= width else text[:width - 1] + "…"


def table(headers: list[str], rows: list[list], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()  # noqa: E731
    click.echo(fmt(headers))
    for row in cells:
        click.echo(fmt(row))


def endpoint(sandbox, agent) -> str:
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
    head = (f"#{frame.get('seq', '-')}  {when(msg.get('timestamp'))}  "
            f"{endpoint(msg.get('from_sandbox'), msg.get('from_agent'))} → "
            f"{endpoint(msg.get('to_sandbox'), msg.get('to_agent'))}  {msg.get('message_type')}  "
            f"({', '.join(extras)})  id {msg.get('message_id')}")
    return f"{head}\n    {summary(msg.get('content'))}"
