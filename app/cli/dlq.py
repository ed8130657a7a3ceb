"""`collab-bus dlq`: the dead-letter queue (list, show, replay, purge)."""

from __future__ import annotations

import json
import sys

import click

from app.cli.client import Bus, OpsError, bus_command
from app.cli.confirm import YES_OPTION, confirm
from app.cli.output import endpoint, json_out, summary, table, when

# The dead-letter reasons of the protocol (docs/protocol.md, `message.dead_lettered`); kept here so the command
# starts without importing the services.
DEAD_LETTER_REASONS = ("recipient_gone", "expired", "max_attempts", "nacked", "undeliverable", "no_capable_agent",
                       "pair_rate", "trace_budget")


@click.group(epilog="""\b
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


@bus_command("list", group=dlq, epilog="""\b
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
        json_out({"dead_letters": items, "count": len(items), "total": total})
        return
    rows = [[d["id"], when(d["created_at"]), d["reason"], d["sandbox_id"] or "(broadcast)", d["attempts"],
             d["message_id"], summary(d.get("last_error") or "", 60).strip('"')] for d in items]
    table(["ID", "DEAD-LETTERED", "REASON", "SANDBOX", "ATTEMPTS", "MESSAGE", "LAST ERROR"], rows,
           "no dead letters" + ("" if not where else f" ({_describe_filter(where)})"))
    if items and total > len(items):
        click.echo(f"({len(items)} of {total}; --limit shows more)")


@bus_command("show", group=dlq, epilog="""\b
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
        json_out(dead)
        return
    message = dead.get("message") or {}
    for label, value in (("dead letter", dead["id"]), ("reason", dead["reason"]),
                         ("sandbox", dead["sandbox_id"] or "(broadcast)"), ("attempts", dead["attempts"]),
                         ("last error", dead.get("last_error") or "-"), ("dead-lettered", when(dead["created_at"])),
                         ("message", dead["message_id"])):
        click.echo(f"{label + ':':<15}{value}")
    if message:
        click.echo(f"{'from → to:':<15}{endpoint(message['from_sandbox'], message['from_agent'])} → "
                   f"{endpoint(message['to_sandbox'], message['to_agent'])}")
        click.echo(f"{'type:':<15}{message['message_type']} (priority {message['priority']}, "
                   f"sent {when(message.get('timestamp'))})")
        click.echo(f"{'content:':<15}{json.dumps(message['content'], ensure_ascii=False)}")


def count(bus: Bus, where: dict) -> int:
    """How many dead letters match `where`."""
    return bus.get("/api/v1/dead-letters", params={**where, "limit": 1})["total"]


@bus_command("replay", group=dlq, epilog="""\b
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
@YES_OPTION
def dlq_replay(bus: Bus, ids: tuple[int, ...], replay_all: bool, reason: str | None, sandbox_id: str | None,
               yes: bool) -> None:
    """Send dead letters back through delivery as a new attempt series (they leave the dead letters).

    Give IDs, or select by --reason and/or --sandbox, or --all. A selection (or several IDs) is counted and
    confirmed first, unless --yes, and replayed page by page with a progress bar.
    """
    where = _filter(reason, sandbox_id)
    if ids and (where or replay_all):
        raise click.UsageError("give dead-letter IDs or a selection (--all, --reason, --sandbox), not both")
    if not ids and not where and not replay_all:
        raise click.UsageError("say which: dead-letter IDs, --reason, --sandbox or --all")
    if ids:
        _replay_ids(bus, ids, yes)
        return
    total = count(bus, where)
    if total == 0:
        click.echo(f"no dead letters to replay ({_describe_filter(where)})")
        return
    confirm(f"replay {total} dead letter{'s' if total != 1 else ''} ({_describe_filter(where)})", yes)
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


def _replay_ids(bus: Bus, ids: tuple[int, ...], yes: bool) -> None:
    """Replay these dead letters (several: confirmed first); each failure one line, then OpsError if any failed
    (one id: its failure is the one line)."""
    if len(ids) > 1:
        confirm(f"replay {len(ids)} dead letters", yes)
    failed = 0
    for dead_letter_id in ids:
        response = bus.request("POST", f"/api/v1/dead-letters/{dead_letter_id}/replay", allow=(404, 409))
        if response.status_code >= 400:
            if len(ids) == 1:
                raise OpsError(f"dead letter {dead_letter_id}: {bus.describe_error(response)}")
            failed += 1
            click.echo(f"collab-bus: dead letter {dead_letter_id}: {bus.describe_error(response)}", err=True)
            continue
        outcome = response.json()
        click.echo(f"replayed dead letter {dead_letter_id} (message {outcome['message_id']} to "
                   f"{outcome.get('sandbox_id') or 'broadcast'}, {outcome.get('redelivery')})")
    if failed:
        raise OpsError(f"{failed} of {len(ids)} dead letters not replayed")


@bus_command("purge", group=dlq, epilog="""\b
Examples:
  collab-bus dlq purge --reason expired          # asks first
  collab-bus dlq purge --sandbox team-b --yes
  collab-bus dlq purge --all --yes
""")
@click.option("--all", "purge_all", is_flag=True, help="Purge every dead letter.")
@REASON_OPTION
@SANDBOX_OPTION
@YES_OPTION
def dlq_purge(bus: Bus, purge_all: bool, reason: str | None, sandbox_id: str | None, yes: bool) -> None:
    """Delete dead letters for good (their messages stay): those of --reason and/or --sandbox, or --all.

    The matching dead letters are counted and the purge confirmed first, unless --yes (needed when stdin is not
    a terminal).
    """
    where = _filter(reason, sandbox_id)
    if not where and not purge_all:
        raise click.UsageError("say which: --reason, --sandbox or --all")
    if where and purge_all:
        raise click.UsageError("--all purges everything: leave out --reason and --sandbox")
    total = count(bus, where)
    if total == 0:
        click.echo(f"no dead letters to purge ({_describe_filter(where)})")
        return
    confirm(f"purge {total} dead letter{'s' if total != 1 else ''} ({_describe_filter(where)}) for good", yes)
    params = where if where else {"all": "true"}
    purged = bus.request("DELETE", "/api/v1/dead-letters", params=params).json()["purged"]
    click.echo(f"purged {purged} dead letter{'s' if purged != 1 else ''}")
