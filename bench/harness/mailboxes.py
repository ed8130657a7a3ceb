"""Many mailbox sockets from one process: the descriptor limit, bulk registration, bulk authenticated opening.

Used by bench/sockets.py (idle sockets held) and bench/fanout.py (broadcast receivers). Sockets are opened
with the asyncio `websockets` client, so N sockets cost N file descriptors, not N OS threads.
"""

from __future__ import annotations

import asyncio
import json
import resource

import httpx
from websockets.asyncio.client import connect

from harness.report import progress
from harness.traffic import Sandbox
from tests.servers import ADMIN_HEADERS


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE (inherited by servers started after it) to the hard limit;
    warn on stderr when even that is below `needed`. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        progress(f"WARNING: RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors this run needs")
    return target


async def register_many(url: str, count: int, workspace: str, prefix: str | None = None,
                        concurrency: int = 16) -> list[Sandbox]:
    """Register `count` sandboxes `<prefix>-<n>` (prefix defaults to `workspace`) in `workspace` with the admin
    key, `concurrency` requests in flight; returns them with their tokens, in order."""
    prefix = prefix or workspace
    gate = asyncio.Semaphore(concurrency)
    done = 0
    async with httpx.AsyncClient(base_url=url, headers=ADMIN_HEADERS, timeout=60) as http:
        async def one(n: int) -> Sandbox:
            nonlocal done
            sandbox = f"{prefix}-{n}"
            async with gate:
                answer = await http.post("/api/v1/sandboxes/register",
                                         json={"sandbox_id": sandbox, "workspace": workspace})
            answer.raise_for_status()
            done += 1
            if done % 1000 == 0:
                progress(f"registered {done}/{count} sandboxes")
            return Sandbox(sandbox, answer.json()["token"])

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def open_mailbox(ws_url: str, sandbox: Sandbox, since: int | None = None):
    """One authenticated mailbox socket of `sandbox`, past its welcome frame (no client pings)."""
    query = "" if since is None else f"?since={since}"
    ws = await connect(f"{ws_url}/ws/sandboxes/{sandbox.sandbox_id}{query}", additional_headers=sandbox.headers,
                       open_timeout=60, ping_interval=None, close_timeout=1, max_size=None)
    frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if frame.get("type") != "welcome":
        await ws.close()
        raise RuntimeError(f"expected a welcome frame on {sandbox.sandbox_id}'s socket, got {frame}")
    return ws


async def open_sockets(ws_url: str, sandboxes: list[Sandbox], per_sandbox: int = 1,
                       concurrency: int = 200) -> dict[str, list]:
    """Open `per_sandbox` authenticated mailbox sockets per sandbox (each past its welcome frame), with at most
    `concurrency` handshakes in flight; sandbox id -> its sockets."""
    gate = asyncio.Semaphore(concurrency)
    opened: dict[str, list] = {s.sandbox_id: [] for s in sandboxes}
    total, done = len(sandboxes) * per_sandbox, 0

    async def one(sandbox: Sandbox) -> None:
        nonlocal done
        async with gate:
            opened[sandbox.sandbox_id].append(await open_mailbox(ws_url, sandbox))
        done += 1
        if done % 1000 == 0:
            progress(f"opened {done}/{total} sockets")

    for _ in range(per_sandbox):
        await asyncio.gather(*(one(sandbox) for sandbox in sandboxes))
    return opened


async def close_all(sockets) -> None:
    """Close every socket of `sockets` (an iterable of sockets), ignoring errors."""
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
