"""Workspaces: create, list, show, change and delete them (with ?force=true, with their sandboxes)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.api.helpers import json_body
from app.auth import current_actor, require
from app.context import bus
from app.schemas import load_or_raise, query_args
from app.schemas.managed import WorkspaceCreateSchema, WorkspaceDeleteQuery, WorkspaceUpdateSchema
from app.services import managed, workspaces

bp = Blueprint("workspaces", __name__, url_prefix="/api/v1")

# Built once: `load` keeps no state on a marshmallow schema, so one instance serves every request at once.
_WORKSPACE_CREATE_SCHEMA = WorkspaceCreateSchema()
_WORKSPACE_UPDATE_SCHEMA = WorkspaceUpdateSchema()
_WORKSPACE_DELETE_QUERY = WorkspaceDeleteQuery()


@bp.get("/workspaces")
def list_workspaces():
    """Every workspace, by id, with how many sandboxes each holds."""
    require("workspaces.read")
    found = workspaces.list_all(bus().db)
    return jsonify({"workspaces": found, "count": len(found)})


@bp.post("/workspaces")
def create_workspace():
    """Create a workspace (audited): 201; 409 `workspace_exists` when the id is taken."""
    require("workspaces.manage")
    data = load_or_raise(_WORKSPACE_CREATE_SCHEMA, json_body())
    workspace = workspaces.create(bus().db, data["id"], data["name"], data["description"], data["settings"],
                                  current_actor())
    return jsonify(workspace), 201, {"Location": f"/api/v1/workspaces/{workspace['id']}"}


@bp.get("/workspaces/<workspace_id>")
def get_workspace(workspace_id: str):
    """One workspace; 404 `unknown_workspace` when there is none."""
    require("workspaces.read", workspace=workspace_id)
    return jsonify(workspaces.get(bus().db, workspace_id))


@bp.put("/workspaces/<workspace_id>")
def update_workspace(workspace_id: str):
    """Change a workspace's name, description or settings (audited)."""
    require("workspaces.manage")
    changes = load_or_raise(_WORKSPACE_UPDATE_SCHEMA, json_body())
    return jsonify(workspaces.update(bus().db, workspace_id, changes, current_actor()))


@bp.delete("/workspaces/<workspace_id>")
def delete_workspace(workspace_id: str):
    """Delete a workspace (audited). 409 `workspace_not_empty` while it has sandboxes, unless `?force=true`: then
    its sandboxes are unregistered and its managed ones stopped and removed (202, with their ids)."""
    require("workspaces.manage")
    query = load_or_raise(_WORKSPACE_DELETE_QUERY, query_args(request.args), what="query string")
    ctx = bus()
    deleting = workspaces.delete(ctx.db, workspace_id, query["force"], current_actor())
    managed.converge_later(ctx.lifecycle, deleting)
    return jsonify({"id": workspace_id, "deleted": True, "deleting_sandboxes": deleting}), 202 if deleting else 200

