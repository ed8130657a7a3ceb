"""Security against a real bus with authentication on: every attack is refused with the right status, and audited."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import time
import uuid

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.servers import BIN, TEST_ADMIN_KEY, TEST_JWT_SECRET, BusProcess, bus_client, wait_for, ws_connect

RECV_TIMEOUT = 10


@pytest.fixture(scope="module")
def secure_bus():
    process = BusProcess("embedded", extra_env={"AUTH_FAILURE_LIMIT": "1000"})
    yield process
    process.cleanup()


@pytest.fixture(scope="module")
def admin(secure_bus):
    with bus_client(secure_bus.url) as http:
        yield http


def cli(bus: BusProcess, *args: str) -> str:
    """Run `collab-bus ARGS` against the bus's database; return its stdout."""
    done = subprocess.run([str(BIN / "collab-bus"), *args], env=bus.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def make_key(bus: BusProcess, role: str, workspace: str | None = None) -> str:
    extra = ["--workspace", workspace] if workspace else []
    return cli(bus, "keys", "create", "--role", role, "--name", f"{role}-{uuid.uuid4().hex[:6]}", *extra).split()[-1]


def client(bus: BusProcess, token: str | None) -> httpx.Client:
    return bus_client(bus.url, token=token)


def register(admin: httpx.Client, sandbox_id: str, workspace: str = "default") -> str:
    """Register a sandbox with the admin key; return its sandbox token."""
    answer = admin.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox_id, "workspace": workspace})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["token"]


def message(sender: str, to: str, message_type: str = "notification") -> dict:
    return {"from_sandbox": sender, "to_sandbox": to, "from_agent": "agent", "message_type": message_type,
            "content": {"x": 1}}


def assert_error(response: httpx.Response, status: int, code: str, reason: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if reason:
        assert error["details"].get("reason") == reason, error
    return error


def audited(admin: httpx.Client, **query) -> list[dict]:
    return admin.get("/api/v1/audit", params={**query, "limit": 1000}).json()["events"]


def assert_audited(admin: httpx.Client, what: str, predicate, **query) -> None:
    wait_for(lambda: any(predicate(e) for e in audited(admin, **query)), 10, f"an audit record of {what}")


def claims(sandbox_id: str, **overrides) -> dict:
    now = int(time.time())
    return {"iss": "collab-bus", "sub": sandbox_id, "ws": "default", "role": "sandbox", "ver": 0, "iat": now,
            "exp": now + 600, "jti": uuid.uuid4().hex, **overrides}


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def unique():
    suffix = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{suffix}"


# ----------------------------------------------------------------- bad credentials: 401, audited

def forged_tokens(sandbox_id: str) -> dict[str, tuple[str, str]]:
    """name -> (token, the details.reason the bus must answer)."""
    return {
        "garbage": ("not-a-token", "malformed"),
        "unknown key": ("cbk_" + "x" * 43, "invalid"),
        "expired": (jwt.encode(claims(sandbox_id, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
                               TEST_JWT_SECRET, algorithm="HS256"), "expired"),
        "other secret": (jwt.encode(claims(sandbox_id), "another-secret-" + "y" * 32, algorithm="HS256"),
                         "invalid_signature"),
        "alg none": (f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(sandbox_id))}.", "algorithm_not_allowed"),
        "RS256 header (HS/RS confusion)": (f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims(sandbox_id))}."
                                           + base64.urlsafe_b64encode(os.urandom(256)).rstrip(b"=").decode(),
                                           "algorithm_not_allowed"),
        "HS512 with the right secret": (jwt.encode(claims(sandbox_id), TEST_JWT_SECRET, algorithm="HS512"),
                                        "algorithm_not_allowed"),
    }


def test_no_token_is_401_and_audited(secure_bus, admin):
    with client(secure_bus, None) as anonymous:
        error = assert_error(anonymous.get("/api/v1/sandboxes"), 401, "unauthorized", "missing")
        assert "Authorization: Bearer" in error["message"]
        assert anonymous.get("/api/v1/sandboxes").headers["WWW-Authenticate"].startswith("Bearer")
        assert anonymous.get("/healthz").status_code == 200  # health stays open
    assert_audited(admin, "a missing token", lambda e: e["details"].get("reason") == "missing"
                   and e["target"] == "/api/v1/sandboxes" and e["remote_addr"] == "127.0.0.1", action="auth.failed")


@pytest.mark.parametrize("name", list(forged_tokens("x")))
def test_forged_tokens_are_401_with_the_reason_and_audited(secure_bus, admin, unique, name):
    sandbox = unique("forged")
    register(admin, sandbox)
    token, reason = forged_tokens(sandbox)[name]
    with client(secure_bus, token) as forger:
        assert_error(forger.get(f"/api/v1/sandboxes/{sandbox}/messages"), 401, "unauthorized", reason)
        assert_error(forger.post("/api/v1/messages", json=message(sandbox, sandbox)), 401, "unauthorized", reason)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"{secure_bus.ws_url}/ws/sandboxes/{sandbox}", token=token, open_timeout=RECV_TIMEOUT)
    assert refused.value.response.status_code == 401
    assert_audited(admin, f"the {name} token", lambda e: e["details"].get("reason") == reason
                   and e["target"] == f"/ws/sandboxes/{sandbox}", action="auth.failed")


def test_a_valid_sandbox_token_works_until_unregistered_or_rotated(secure_bus, admin, unique):
    sandbox = unique("sb")
    first = register(admin, sandbox)
    with client(secure_bus, first) as own:
        assert own.get(f"/api/v1/sandboxes/{sandbox}/messages").status_code == 200
        rotated = own.post(f"/api/v1/sandboxes/{sandbox}/token", json={"rotate": True})
        assert rotated.status_code == 200 and rotated.json()["expires_at"] > time.time()
        assert_error(own.get(f"/api/v1/sandboxes/{sandbox}/messages"), 401, "unauthorized", "revoked")
    with client(secure_bus, rotated.json()["token"]) as own:
        refreshed = own.post(f"/api/v1/sandboxes/{sandbox}/token")  # refresh without rotation: both stay valid
        assert refreshed.status_code == 200
        assert own.get(f"/api/v1/sandboxes/{sandbox}/messages").status_code == 200
        assert own.delete(f"/api/v1/sandboxes/{sandbox}").status_code == 200
        assert_error(own.get(f"/api/v1/sandboxes/{sandbox}/messages"), 401, "unauthorized", "revoked")
    assert_audited(admin, "the rotation", lambda e: e["details"].get("rotate") is True,
                   action="sandbox.token_issued", target=f"sandbox:{sandbox}")


def test_a_revoked_api_key_is_401(secure_bus, admin):
    key = make_key(secure_bus, "operator")
    with client(secure_bus, key) as operator:
        assert operator.get("/api/v1/dead-letters").status_code == 200
        prefix = key[:12]
        assert "revoked" in cli(secure_bus, "keys", "revoke", prefix, "--yes")
        assert_error(operator.get("/api/v1/dead-letters"), 401, "unauthorized", "revoked")
    listing = cli(secure_bus, "keys", "list")
    assert prefix in listing and "admin (ADMIN_API_KEY)" in listing
    assert_audited(admin, "the revocation", lambda e: True, action="key.revoked")
    assert_audited(admin, "the revoked key's try", lambda e: e["details"].get("reason") == "revoked",
                   action="auth.failed")


# ----------------------------------------------------------------- isolation: one sandbox never acts as another

def test_a_sandbox_token_cannot_touch_another_sandbox(secure_bus, admin, unique):
    alice, bob = unique("alice"), unique("bob")
    alice_token, bob_token = register(admin, alice), register(admin, bob)
    with client(secure_bus, bob_token) as as_bob:
        assert as_bob.post("/api/v1/messages", json=message(bob, bob)).status_code == 202
        wait_for(lambda: as_bob.get(f"/api/v1/sandboxes/{bob}/messages").json()["head_seq"] == 1, 10, "bob's entry")
    with client(secure_bus, alice_token) as as_alice:
        for response in (as_alice.get(f"/api/v1/sandboxes/{bob}/messages"),
                         as_alice.post(f"/api/v1/sandboxes/{bob}/ack", json={"seq": 1}),
                         as_alice.post(f"/api/v1/sandboxes/{bob}/nack", json={"seq": 1}),
                         as_alice.post(f"/api/v1/sandboxes/{bob}/heartbeat"),
                         as_alice.post(f"/api/v1/sandboxes/{bob}/token"),
                         as_alice.delete(f"/api/v1/sandboxes/{bob}"),
                         as_alice.post("/api/v1/sandboxes/register", json={"sandbox_id": bob})):
            assert_error(response, 403, "sandbox_mismatch")
        spoofed = as_alice.post("/api/v1/messages", json=message(bob, alice))
        error = assert_error(spoofed, 403, "sandbox_mismatch")
        assert error["details"] == {"token_sandbox": alice, "from_sandbox": bob}
        assert as_alice.post("/api/v1/messages", json=message(alice, bob)).status_code == 202
    with ws_connect(f"{secure_bus.ws_url}/ws/sandboxes/{bob}", token=alice_token) as ws:
        frame = json.loads(ws.recv(timeout=RECV_TIMEOUT))
        assert frame["type"] == "error" and frame["code"] == "sandbox_mismatch"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_TIMEOUT)
        assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == "sandbox_mismatch"
    assert_audited(admin, "the spoofed send", lambda e: e["details"].get("from_sandbox") == bob,
                   action="message.refused", actor=f"sandbox:{alice}")
    assert_audited(admin, "the socket attempt", lambda e: e["details"].get("path") == f"/ws/sandboxes/{bob}",
                   action="access.denied", actor=f"sandbox:{alice}")


def test_cross_workspace_messages_and_commands_need_a_rule(secure_bus, admin, unique):
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    alice_token = register(admin, alice, workspace="team-a")
    register(admin, bob, workspace="team-a")
    register(admin, carol, workspace="team-b")
    with client(secure_bus, alice_token) as as_alice:
        assert as_alice.post("/api/v1/messages", json=message(alice, bob)).status_code == 202
        error = assert_error(as_alice.post("/api/v1/messages", json=message(alice, carol)), 403, "policy_denied")
        assert error["details"]["rule"] is None and "workspace" in error["details"]["reason"]
        error = assert_error(as_alice.post("/api/v1/messages", json=message(alice, bob, "command")), 403,
                             "policy_denied")
        assert "grant" in error["details"]["reason"]
        assert_error(as_alice.post("/api/v1/messages", json=message(alice, unique("ghost"))), 404, "unknown_sandbox")

        rule = admin.post("/api/v1/policies", json={"effect": "allow", "from_sandbox": alice, "to_workspace": "team-b",
                                                    "message_types": ["notification"]})
        assert rule.status_code == 201, rule.text
        assert as_alice.post("/api/v1/messages", json=message(alice, carol)).status_code == 202
        assert_error(as_alice.post("/api/v1/messages", json=message(alice, carol, "request")), 403, "policy_denied")
        grant = admin.post("/api/v1/policies", json={"effect": "allow", "from_sandbox": alice, "to_sandbox": bob,
                                                     "message_types": ["command"], "description": "alice leads bob"})
        assert as_alice.post("/api/v1/messages", json=message(alice, bob, "command")).status_code == 202
        deny = admin.post("/api/v1/policies", json={"effect": "deny", "from_sandbox": alice, "to_sandbox": bob})
        error = assert_error(as_alice.post("/api/v1/messages", json=message(alice, bob)), 403, "policy_denied")
        assert error["details"]["rule"]["id"] == deny.json()["id"]
        for created in (rule, grant, deny):
            assert admin.delete(f"/api/v1/policies/{created.json()['id']}").status_code == 200
    refusals = audited(admin, action="message.refused", actor=f"sandbox:{alice}")
    assert {e["details"]["code"] for e in refusals} == {"policy_denied"} and len(refusals) == 4


def test_a_sandbox_reads_its_own_mailbox_by_header_query_or_first_frame(secure_bus, admin, unique):
    sandbox = unique("own")
    token = register(admin, sandbox)
    url = f"{secure_bus.ws_url}/ws/sandboxes/{sandbox}"
    with ws_connect(url, token=token) as ws:
        assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
    with ws_connect(f"{url}?token={token}", token=None) as ws:
        assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
    with ws_connect(url, token=None) as ws:
        ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
    with ws_connect(url, token=None) as ws:  # anything but an auth frame first: refused, nothing sent before
        ws.send(json.dumps({"type": "ping"}))
        frame = json.loads(ws.recv(timeout=RECV_TIMEOUT))
        assert frame["type"] == "error" and frame["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_TIMEOUT)
        assert closed.value.rcvd.code == 1008


def test_roles_are_enforced(secure_bus, admin, unique):
    viewer, registrar = make_key(secure_bus, "viewer"), make_key(secure_bus, "registrar", workspace="team-x")
    sandbox = unique("sb")
    register(admin, sandbox)
    with client(secure_bus, viewer) as as_viewer:
        assert as_viewer.get("/api/v1/sandboxes").status_code == 200
        assert as_viewer.get("/api/v1/dead-letters").status_code == 200
        for response in (as_viewer.post("/api/v1/messages", json=message(sandbox, sandbox)),
                         as_viewer.post("/api/v1/sandboxes/register", json={"sandbox_id": unique("v")}),
                         as_viewer.post("/api/v1/dead-letters/replay", json={}),
                         as_viewer.get("/api/v1/audit")):
            assert_error(response, 403, "forbidden")
    with client(secure_bus, registrar) as as_registrar:
        made = as_registrar.post("/api/v1/sandboxes/register", json={"sandbox_id": unique("x"), "workspace": "team-x"})
        assert made.status_code == 201 and made.json()["token"]
        assert_error(as_registrar.post("/api/v1/sandboxes/register", json={"sandbox_id": unique("y")}),
                     403, "workspace_mismatch")
        assert_error(as_registrar.get("/api/v1/sandboxes"), 403, "forbidden")
    assert any(e["actor"].startswith("key:") and e["details"].get("permission") == "messages.send"
               for e in audited(admin, action="access.denied"))


def test_oversized_bodies_are_413(secure_bus, admin, unique):
    sandbox = unique("big")
    token = register(admin, sandbox)
    with client(secure_bus, token) as own:
        body = message(sandbox, sandbox)
        body["content"] = {"blob": "x" * (256 * 1024 + 10)}
        assert_error(own.post("/api/v1/messages", json=body), 413, "payload_too_large")
        huge = own.post("/api/v1/messages", content=b'{"a":"' + b"x" * (400 * 1024) + b'"}',
                        headers={"Content-Type": "application/json"})
        assert huge.status_code == 413
    refusals = audited(admin, action="request.refused", actor=f"sandbox:{sandbox}")
    assert [e["details"]["status"] for e in refusals] == [413, 413]


# ----------------------------------------------------------------- limits

@pytest.fixture(scope="module")
def strict_bus():
    process = BusProcess("embedded", extra_env={"RATE_LIMIT_PER_SECOND": "2", "RATE_LIMIT_BURST": "5",
                                                "AUTH_FAILURE_LIMIT": "3", "MAX_SOCKETS_PER_SANDBOX": "2",
                                                "MAX_WS_FRAME_BYTES": "4096"})
    yield process
    process.cleanup()


def test_socket_limits(strict_bus, unique):
    sandbox = unique("socks")
    with bus_client(strict_bus.url) as http:
        wait_for(lambda: http.post("/api/v1/sandboxes/register", json={"sandbox_id": sandbox}).status_code == 201,
                 20, "a registration within the rate limit")
    url = f"{strict_bus.ws_url}/ws/sandboxes/{sandbox}"
    with ws_connect(url) as first, ws_connect(url) as second:
        for ws in (first, second):
            assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
        with ws_connect(url) as third:
            frame = json.loads(third.recv(timeout=RECV_TIMEOUT))
            assert frame["code"] == "too_many_sockets"
        first.send(json.dumps({"type": "ping", "pad": "x" * 8192}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                first.recv(timeout=RECV_TIMEOUT)
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1009


def test_a_flood_past_the_rate_limit_is_429_with_retry_after(strict_bus):
    with bus_client(strict_bus.url) as http:
        answers = [http.get("/api/v1/sandboxes") for _ in range(12)]
    limited = [a for a in answers if a.status_code == 429]
    assert answers[0].status_code == 200 and limited
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["error"]["details"]["reason"] == "rate_limit"
    time.sleep(1)
    with bus_client(strict_bus.url) as http:
        refusals = http.get("/api/v1/audit", params={"action": "request.refused"}).json()["events"]
    assert [e["details"]["status"] for e in refusals] == [429]  # one row per caller per 10 s, not one per request


def test_repeated_failed_authentications_block_the_address(strict_bus):
    with bus_client(strict_bus.url, token="cbk_" + "z" * 43) as forger:
        codes = [forger.get("/api/v1/sandboxes").status_code for _ in range(5)]
    assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]
    metrics = httpx.get(f"{strict_bus.url}/metrics").text
    assert "collab_bus_auth_failures_total 5.0" in metrics and "collab_bus_rate_limited_total" in metrics
    time.sleep(1)  # the admin's own rate limit refills
    with bus_client(strict_bus.url) as admin:  # valid credentials from the same address still pass
        assert admin.get("/api/v1/sandboxes").status_code == 200
        failures = admin.get("/api/v1/audit", params={"action": "auth.failed"}).json()["events"]
    assert len([e for e in failures if e["details"]["reason"] == "invalid"]) == 3  # the blocked ones add no rows


# ----------------------------------------------------------------- first start, AUTH_ENABLED=false, TLS

def test_the_first_start_creates_an_admin_key_once(tmp_path):
    bus = BusProcess("embedded", extra_env={"ADMIN_API_KEY": ""})
    try:
        key_file = bus.dir / "admin-api-key"
        secret = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and secret.startswith("cbk_")
        assert secret in (bus.dir / "up.log").read_text()
        with bus_client(bus.url, token=secret) as http:
            assert http.get("/api/v1/audit").status_code == 200
        bus.stop()
        bus.start()
        assert (bus.dir / "up.log").read_text().count("created the first admin API key") == 1
    finally:
        bus.cleanup()


def test_auth_disabled_warns_loudly_and_admits_everyone():
    bus = BusProcess("embedded", extra_env={"AUTH_ENABLED": "false"})
    try:
        with bus_client(bus.url, token=None) as http:
            assert http.get("/api/v1/sandboxes").status_code == 200
        assert "AUTH_ENABLED=false" in (bus.dir / "up.log").read_text()
    finally:
        bus.cleanup()


def test_up_serves_https_and_wss_with_a_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    bus = BusProcess("embedded", extra_env={"TLS_CERTFILE": str(cert), "TLS_KEYFILE": str(key)}, scheme="https")
    try:
        admin = {"Authorization": f"Bearer {TEST_ADMIN_KEY}"}
        with httpx.Client(base_url=bus.url, verify=False, headers=admin) as http:
            assert http.get("/api/v1/sandboxes").status_code == 200
            http.post("/api/v1/sandboxes/register", json={"sandbox_id": "tls-sb"})
        import ssl
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with ws_connect(f"wss://127.0.0.1:{bus.port}/ws/sandboxes/tls-sb", ssl=context) as ws:
            assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"
    finally:
        bus.cleanup()
