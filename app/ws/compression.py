"""Whether sockets negotiate permessage-deflate (WS_PERMESSAGE_DEFLATE).

simple-websocket accepts the extension whenever a client offers it (most clients do, `websockets` among them),
and every socket then keeps a zlib compressor and decompressor: about 100 KiB of resident memory per socket,
more than half of what an idle socket costs under gevent. Off (bench/sockets.py: ~63 KiB a socket instead of
~160 KiB), frames travel uncompressed.
"""

from __future__ import annotations

import simple_websocket.ws
from wsproto.extensions import Extension, PerMessageDeflate


class _NoExtension(Extension):
    """An extension no client offers: a server accepting only it negotiates none."""

    name = "x-collab-bus-none"

    def offer(self) -> bool:
        """Never offered (servers do not offer; this one is never negotiated)."""
        return False


def set_permessage_deflate(enabled: bool) -> None:
    """Make this process's sockets accept permessage-deflate (when offered) or never negotiate it.
    simple-websocket builds the extension it accepts from this module-level name at each handshake."""
    simple_websocket.ws.PerMessageDeflate = PerMessageDeflate if enabled else _NoExtension
