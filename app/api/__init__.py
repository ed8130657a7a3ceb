"""REST API v1: thin blueprints that validate with a schema, call a service and serialize the result.

Each module owns its blueprint (`bp`); `BLUEPRINT_MODULES` lists them for the app factory
(app.composition.create_app) to register; `probes` holds the open `/`, `/healthz`, `/readyz` and `/metrics`.
"""

BLUEPRINT_MODULES = ("audit", "dead_letters", "docs", "messages", "policies", "sandboxes", "workspaces", "managed",
                     "collaboration", "topics", "traces", "agents", "configuration", "probes")
