"""What a person meets on a new bus over HTTP: its address leads to the GUI, a credential sent in the wrong form is
named as such with the form expected, and the database it creates is readable by its owner only.

Real buses: the embedded one (`collab-bus up`, werkzeug) and `collab-bus api` (gunicorn, gevent) on redis-server,
each with a fresh DATA_DIR.
"""

from __future__ import annotations

import json
import stat

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.servers import TEST_ADMIN_KEY, BusProcess, bus_client

RECV_TIMEOUT = 10
EXPECTED_FORM = "Authorization: Bearer <key or token>"


@pytest.fixture(scope="module", params=["embedded", "api"])
def fresh_bus(request):
    """A bus on a fresh DATA_DIR: `collab-bus up`, or `collab-bus api` on Redis (no worker: nothing is delivered
    here). Failed authentications are not limited: these tests make many on purpose."""
    env = {"AUTH_FAILURE_LIMIT": "100000"}
    if request.param == "api":
        process = BusProcess("redis", redis_url=request.getfixturevalue("redis_server").url, worker=False,
                             extra_env=env)
    else:
        process = BusProcess("embedded", extra_env=env)
    yield process
    process.cleanup()


# --------------------------------------------------------------------------------------------- the address


def test_the_bus_address_redirects_to_the_gui(fresh_bus):
    with bus_client(fresh_bus.url, token=None) as anonymous:
        answer = anonymous.get("/")
        assert answer.status_code == 302, answer.text
        assert answer.headers["Location"] in ("/ui/", f"{fresh_bus.url}/ui/")
        page = anonymous.get("/", follow_redirects=True)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html"), page.text[:300]


# --------------------------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("header", [
    pytest.param(f"Token {TEST_ADMIN_KEY}", id="token-scheme"),
    pytest.param(TEST_ADMIN_KEY, id="bare-key"),
    pytest.param("Basic YWRtaW46c2VjcmV0", id="basic"),
    pytest.param("Bearer", id="bearer-without-token"),
    pytest.param(f"Bearer: {TEST_ADMIN_KEY}", id="bearer-colon"),
])
def test_a_credential_in_the_wrong_form_is_malformed_and_names_the_form_expected(fresh_bus, header):
    with bus_client(fresh_bus.url, token=None, headers={"Authorization": header}) as caller:
        answers = [caller.get("/api/v1/sandboxes"), caller.post("/api/v1/sandboxes/register", json={"sandbox_id": "x"})]
    for answer in answers:
        assert answer.status_code == 401, answer.text
        error = answer.json()["error"]
        assert error["code"] == "unauthorized" and error["details"] == {"reason": "malformed"}, error
        assert EXPECTED_FORM in error["message"], error
        assert TEST_ADMIN_KEY not in answer.text  # the credential is never echoed


def test_no_credential_at_all_is_still_missing(fresh_bus):
    with bus_client(fresh_bus.url, token=None) as anonymous:
        error = anonymous.get("/api/v1/sandboxes").json()["error"]
    assert error["details"] == {"reason": "missing"}, error


@pytest.mark.parametrize("header", [f"Token {TEST_ADMIN_KEY}", TEST_ADMIN_KEY])
def test_a_socket_handshake_with_a_credential_in_the_wrong_form_is_refused_as_malformed(fresh_bus, header):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{fresh_bus.ws_url}/ws/events", additional_headers={"Authorization": header},
                open_timeout=RECV_TIMEOUT)
    response = refused.value.response
    assert response.status_code == 401
    error = json.loads(response.body)["error"]
    assert error["details"] == {"reason": "malformed"} and EXPECTED_FORM in error["message"], error


def test_a_browser_s_basic_credentials_for_a_proxy_do_not_stop_a_socket_s_auth_frame(fresh_bus):
    """A browser sends the Basic credentials of a proxy in front of the bus on its socket handshakes by itself; the
    GUI authenticates with its first frame."""
    with connect(f"{fresh_bus.ws_url}/ws/events", additional_headers={"Authorization": "Basic YWRtaW46c2VjcmV0"},
                 open_timeout=RECV_TIMEOUT) as ws:
        ws.send(json.dumps({"type": "auth", "token": TEST_ADMIN_KEY}))
        assert json.loads(ws.recv(timeout=RECV_TIMEOUT))["type"] == "welcome"


# --------------------------------------------------------------------------------------------- the data directory


def test_the_database_is_readable_by_its_owner_only(fresh_bus):
    with bus_client(fresh_bus.url) as admin:  # a write: the WAL and its index exist while the bus runs
        assert admin.post("/api/v1/sandboxes/register", json={"sandbox_id": "private"}).status_code in (200, 201)
    files = [path for path in fresh_bus.dir.iterdir() if path.name.startswith("collab-bus.db")]
    assert any(path.name == "collab-bus.db" for path in files), sorted(p.name for p in fresh_bus.dir.iterdir())
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in files}
    assert set(modes.values()) == {"0o600"}, modes
