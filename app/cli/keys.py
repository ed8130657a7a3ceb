"""`collab-bus keys`: API keys, created, listed and revoked in the database directly (no running bus needed)."""

from __future__ import annotations

import click

from app.cli.process import database as _database


@click.group()
def keys() -> None:
    """Manage API keys (admin, operator, viewer, registrar). Keys are stored hashed; a secret is shown once."""


@keys.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "operator", "viewer", "registrar"]),
              help="What the key may do (see the README's permission table).")
@click.option("--name", required=True, help="Who or what holds the key (shown in listings and the audit trail).")
@click.option("--workspace", default=None, help="For registrar keys: the one workspace it may register sandboxes in.")
def keys_create(role: str, name: str, workspace: str | None) -> None:
    """Create a key and print its secret (only now: it is not stored)."""
    from app.services import audit, auth

    with _database() as database:
        info, secret = auth.create_key(database, name, role, workspace)
        audit.record_now(database, audit.Actor("cli", "admin"), "key.created", target=f"key:{info['id']}",
                         name=name, role=role, workspace=workspace)
    click.echo(f"created key {info['id']} ({role}{', workspace ' + workspace if workspace else ''}) for {name}:")
    click.echo(secret)


@keys.command("list")
@click.option("--active", is_flag=True, help="Hide revoked keys.")
def keys_list(active: bool) -> None:
    """List keys: id, role, workspace, name, prefix, created, last used, revoked."""
    from app.services import auth

    with _database() as database:
        rows = auth.list_keys(database, include_revoked=not active)
    click.echo(f"{'id':>4}  {'role':<9}  {'workspace':<12}  {'prefix':<12}  {'created':<20}  {'last used':<20}  "
               f"{'revoked':<20}  name")
    for key in rows:
        click.echo(f"{key['id']:>4}  {key['role']:<9}  {key['workspace'] or '-':<12}  {key['prefix']:<12}  "
                   f"{_short(key['created_at']):<20}  {_short(key['last_used_at']):<20}  "
                   f"{_short(key['revoked_at']):<20}  {key['name']}")


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke KEY (its id, name or secret prefix): it stops working at once."""
    from app.errors import BusError
    from app.services import audit, auth

    with _database() as database:
        try:
            info = auth.revoke_key(database, key)
        except BusError as exc:
            raise click.ClickException(exc.message) from None
        audit.record_now(database, audit.Actor("cli", "admin"), "key.revoked", target=f"key:{info['id']}",
                         name=info["name"], role=info["role"])
    click.echo(f"revoked key {info['id']} ({info['role']}) of {info['name']}")


def _short(stamp: str | None) -> str:
    return stamp[:19].replace("T", " ") if stamp else "-"
