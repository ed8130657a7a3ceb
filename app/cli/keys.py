"""`collab-bus keys`: API keys, created, listed and revoked in the database directly (no running bus needed).

The database is the one DATA_DIR or DATABASE_URL names, as for the bus; it must exist (app.cli.process.database),
and the commands that change it say which one they changed.
"""

from __future__ import annotations

import click

from app.cli.confirm import YES_OPTION, confirm
from app.cli.process import database as _database

EPILOG_KEYS = """\b
Examples:
  DATA_DIR=/tmp/bus collab-bus keys create --role registrar --workspace default --name agents | tail -1
  collab-bus keys list --active
  collab-bus keys revoke ci --yes
\b
Run them with the bus's DATA_DIR (or DATABASE_URL): a key written to another database is unknown to the bus.
"""


@click.group(epilog=EPILOG_KEYS)
def keys() -> None:
    """Manage API keys (admin, operator, viewer, registrar). Keys are stored hashed; a secret is shown once."""


def _nonblank(ctx, param, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


@keys.command("create", epilog=EPILOG_KEYS)
@click.option("--role", required=True, type=click.Choice(["admin", "operator", "viewer", "registrar"]),
              help="What the key may do (the permission table is in docs/security.md).")
@click.option("--name", required=True, callback=_nonblank,
              help="Who or what holds the key (shown in listings and the audit trail); unique among active keys.")
@click.option("--workspace", default=None,
              help="Registrar keys only, and required for them: the one workspace it may register sandboxes in.")
def keys_create(role: str, name: str, workspace: str | None) -> None:
    """Create a key; print which database it went to, then its secret alone on the last line (only now: it is
    not stored)."""
    from app.services import audit, auth

    with _database() as (database, where):
        _refuse_taken_name(auth.list_keys(database, include_revoked=False), name)
        info, secret = auth.create_key(database, name, role, workspace)
        audit.record_now(database, audit.Actor("cli", "admin"), "key.created", target=f"key:{info['id']}",
                         name=name, role=role, workspace=workspace)
    click.echo(f"created key {info['id']} ({role}{', workspace ' + workspace if workspace else ''}) for {name} "
               f"in {where}:")
    click.echo(secret)


def _refuse_taken_name(active: list[dict], name: str) -> None:
    """UsageError when an active key has `name` already (names tell keys apart in listings and `keys revoke`)."""
    for key in active:
        if key["name"] == name:
            raise click.UsageError(f"an active key is named {name!r} already (key {key['id']}, {key['role']}): "
                                   "choose another --name, or revoke that key first")


@keys.command("list")
@click.option("--active", is_flag=True, help="Hide revoked keys.")
def keys_list(active: bool) -> None:
    """List keys: id, role, workspace, name, prefix, created, last used, revoked."""
    from app.services import auth

    with _database() as (database, _):
        rows = auth.list_keys(database, include_revoked=not active)
    click.echo(f"{'id':>4}  {'role':<9}  {'workspace':<12}  {'prefix':<12}  {'created':<20}  {'last used':<20}  "
               f"{'revoked':<20}  name")
    for key in rows:
        click.echo(f"{key['id']:>4}  {key['role']:<9}  {key['workspace'] or '-':<12}  {key['prefix']:<12}  "
                   f"{_short(key['created_at']):<20}  {_short(key['last_used_at']):<20}  "
                   f"{_short(key['revoked_at']):<20}  {key['name']}")


@keys.command("revoke", epilog=EPILOG_KEYS)
@click.argument("key")
@YES_OPTION
def keys_revoke(key: str, yes: bool) -> None:
    """Revoke KEY (its id, name or secret prefix): it stops working at once. Asks first unless --yes."""
    from app.services import audit, auth

    with _database() as (database, where):
        confirm(f"revoke the active key with id, name or prefix {key!r} in {where}", yes)
        info = auth.revoke_key(database, key)
        audit.record_now(database, audit.Actor("cli", "admin"), "key.revoked", target=f"key:{info['id']}",
                         name=info["name"], role=info["role"])
    click.echo(f"revoked key {info['id']} ({info['role']}) of {info['name']} in {where}")


def _short(stamp: str | None) -> str:
    return stamp[:19].replace("T", " ") if stamp else "-"
