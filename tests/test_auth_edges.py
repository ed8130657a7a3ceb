"""Credentials as operators and clients really bring them: a preset admin key of any form, tokens in URLs,
clocks that disagree between API nodes, and clients behind a reverse proxy. Real buses, real clients."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import jwt
import pytest

from tests.servers import BIN, TEST_ADMIN_KEY, TEST_JWT_SECRET, BusProcess, bus_client, wait_for, ws_connect

PRESET_ADMIN_KEY = "bar-admin-key-0123456789abcdef"  # from an operator's secret store: no `cbk_` prefix
RECV_TIMEOUT = 10


@pytest.fixture(scope="module")
def preset_bus():
    """`collab-bus up` (what `make run` runs) with an operator's own ADMIN_API_KEY; a low failure limit, a trusted
    proxy in front."""
    process = BusProcess("embedded", extra_env={"ADMIN_API_KEY": PRESET_ADMIN_KEY, "TRUSTED_PROXIES": "1",
                                                "AUTH_FAILURE_LIMIT": "3"})
    yield process
    process.cleanup()


@pytest.fixture(scope="module")
def admin(preset_bus):
    with bus_client(preset_bus.url, token=PRESET_ADMIN_KEY) as http:
        yield http


def register(admin: httpx.Client, sandbox_id: str) -> str:
    answer = admin.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["token"]


def audit_events(admin: httpx.Client, action: str) -> list[dict]:
    return admin.get("/api/v1/audit", params={"action": action, "limit": 1000}).json()["events"]


def test_a_preset_admin_key_of_any_form_serves_authenticated_calls(preset_bus, admin):
    assert admin.get("/api/v1/sandboxes").status_code == 200
    assert register(admin, "preset-a")
    listing = subprocess.run([str(BIN / "collab-bus"), "keys", "list"], env=preset_bus.env, capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "ADMIN_API_KEY" in line)
    assert " bar- " in row and PRESET_ADMIN_KEY[:5] not in row  # a few characters of a preset key, never half
    with bus_client(preset_bus.url, token=PRESET_ADMIN_KEY[:-1] + "X") as wrong:
        error = wrong.get("/api/v1/sandboxes").json()["error"]
    assert error["code"] == "unauthorized" and error["details"]["reason"] == "invalid"


def test_a_token_in_a_rest_url_is_refused_and_audited(preset_bus, admin):
    with bus_client(preset_bus.url, token=None, headers={"X-Forwarded-For": "198.51.100.7"}) as anonymous:
        answer = anonymous.get("/api/v1/sandboxes", params={"token": PRESET_ADMIN_KEY})
    assert answer.status_code == 401, answer.text
    error = answer.json()["error"]
    assert error["details"] == {"reason": "token_in_query"} and "Authorization: Bearer" in error["message"]
    wait_for(lambda: any(e["details"].get("reason") == "token_in_query" for e in audit_events(admin, "auth.failed")),
             10, "the audit record of a token in a URL")


def test_a_token_in_a_websocket_url_works_and_is_never_logged():
    """A bus of its own at LOG_LEVEL=DEBUG; it must still answer afterwards (its log is shown if not)."""
    preset_bus = BusProcess("embedded", extra_env={"ADMIN_API_KEY": PRESET_ADMIN_KEY, "LOG_LEVEL": "DEBUG"})
    try:
        with bus_client(preset_bus.url, token=PRESET_ADMIN_KEY) as admin:
            _socket_tokens_stay_out_of_the_log(preset_bus, admin)
            assert admin.get("/healthz").status_code == 200, preset_bus.logs()[-5000:]
    finally:
        preset_bus.cleanup()


def _socket_tokens_stay_out_of_the_log(preset_bus: BusProcess, admin: httpx.Client) -> None:
    token = register(admin, "preset-ws")
    with ws_connect(f"{preset_bus.ws_url}/ws/sandboxes/preset-ws?since=0&token={token}", token=None) as ws:
        assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
    with ws_connect(f"{preset_bus.ws_url}/ws/events?token={PRESET_ADMIN_KEY}", token=None) as ws:
        assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
    wait_for(lambda: "/ws/events?token=" in preset_bus.logs(), 10, "the request lines in the log (LOG_LEVEL=DEBUG)")
    logs = preset_bus.logs()
    assert token not in logs and PRESET_ADMIN_KEY not in logs
    assert "token=[redacted]" in logs


def resigned(token: str, **changes) -> str:
    """`token` with some claims changed, signed again with the bus's secret (as another API node would)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode({**claims, **changes}, TEST_JWT_SECRET, algorithm="HS256")


def test_sandbox_tokens_tolerate_clock_skew_between_nodes(preset_bus, admin):
    token = register(admin, "preset-skew")
    now = int(time.time())
    cases = {  # claims -> what the bus answers (JWT_LEEWAY is 30 s by default)
        "issued 5 s ahead of this node": ({"iat": now + 5}, None),
        "expired 5 s ago by this node's clock": ({"iat": now - 600, "exp": now - 5}, None),
        "issued 5 minutes ahead": ({"iat": now + 300}, "not_yet_valid"),
        "expired 5 minutes ago": ({"iat": now - 900, "exp": now - 300}, "expired"),
    }
    for name, (changes, refusal) in cases.items():
        # its own client address (via the trusted proxy): the refusals stay below this bus' failure limit
        with bus_client(preset_bus.url, token=resigned(token, **changes),
                        headers={"X-Forwarded-For": "192.0.2.10"}) as sandbox:
            answer = sandbox.get("/api/v1/sandboxes/preset-skew/messages")
        if refusal is None:
            assert answer.status_code == 200, (name, answer.text)
        else:
            assert answer.status_code == 401 and answer.json()["error"]["details"] == {"reason": refusal}, name


def test_behind_a_trusted_proxy_failures_are_limited_per_client(preset_bus, admin):
    """TRUSTED_PROXIES=1: the failed-authentication limit counts the address the proxy saw, not the proxy's."""
    def attempt(client_address: str) -> int:
        with bus_client(preset_bus.url, token="cbk_" + "q" * 43, headers={"X-Forwarded-For": client_address}) as c:
            return c.get("/api/v1/sandboxes").status_code

    assert [attempt("203.0.113.5") for _ in range(4)] == [401, 401, 401, 429]
    assert attempt("203.0.113.6") == 401  # another client behind the same proxy is not locked out
    failures = audit_events(admin, "auth.failed")
    assert {"203.0.113.5", "203.0.113.6"} <= {e["remote_addr"] for e in failures}


def test_without_trusted_proxies_forwarded_headers_are_ignored():
    bus = BusProcess("embedded", extra_env={"AUTH_FAILURE_LIMIT": "2"})
    try:
        def attempt(client_address: str) -> int:
            with bus_client(bus.url, token="cbk_" + "q" * 43, headers={"X-Forwarded-For": client_address}) as c:
                return c.get("/api/v1/sandboxes").status_code

        assert [attempt("203.0.113.5") for _ in range(3)] == [401, 401, 429]
        assert attempt("203.0.113.6") == 429  # a client cannot pick its own address by a header
    finally:
        bus.cleanup()


def test_gunicorn_access_log_never_shows_a_token(redis_server):
    """`collab-bus api` logs request lines at LOG_LEVEL=DEBUG (gunicorn's access log): a token in a URL is
    redacted there."""
    bus = BusProcess("redis", redis_url=redis_server.url, worker=False, extra_env={"LOG_LEVEL": "DEBUG"})
    try:
        with ws_connect(f"{bus.ws_url}/ws/events?since=0123456789ab-1&token={TEST_ADMIN_KEY}", token=None) as ws:
            assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
        with bus_client(bus.url, token=None) as anonymous:
            assert anonymous.get("/api/v1/sandboxes", params={"token": TEST_ADMIN_KEY}).status_code == 401
        wait_for(lambda: "/api/v1/sandboxes?token=" in bus.logs(), 10, "the request lines in gunicorn's access log")
        logs = bus.logs()
        assert [line for line in logs.splitlines() if TEST_ADMIN_KEY in line] == []
        assert '"GET /api/v1/sandboxes?token=[redacted] HTTP/1.1" 401' in logs
    finally:
        bus.cleanup()
