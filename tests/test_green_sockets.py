"""Idle sockets under gevent cost one greenlet, not three: a mailbox socket's connection is read by its handler while
it waits for frames (app.ws.connections.InlineReader, with simple_websocket's own loop's behaviour: pings answered,
the closing handshake finished, the reader ending with the connection), and its stream keeps no greenlet while
nothing is pushed (app.ws.stream._GreenInbox). bench/sockets.py measures what it buys."""

from __future__ import annotations

import re
import time
from collections import deque

import gevent
import pytest
from flask import Flask
from gevent import socket as gsocket
from gevent.queue import SimpleQueue
from simple_websocket import ConnectionClosed, Server
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request, TextMessage

from app.ws import routes
from app.ws.connections import _HANDSHAKEN, INLINE_READ_ROUTES, InlineEvent, InlineReader, _socket_reader
from app.ws.hub import CLOSE
from app.ws.stream import _GreenInbox


class Peer:
    """The client end of a socket pair whose other end a simple_websocket Server read inline serves."""

    def __init__(self):
        self.sock, server_sock = gsocket.socketpair()
        self.client = WSConnection(ConnectionType.CLIENT)
        request = self.client.send(Request(host="bus", target="/")).decode()
        key = re.search(r"(?im)^sec-websocket-key: *(\S+)", request).group(1)
        environ = {"gunicorn.socket": server_sock, "HTTP_HOST": "bus", "HTTP_UPGRADE": "websocket",
                   "HTTP_CONNECTION": "Upgrade", "HTTP_SEC_WEBSOCKET_KEY": key, "HTTP_SEC_WEBSOCKET_VERSION": "13"}
        self.ws = Server(environ, event_class=InlineEvent, thread_class=_socket_reader)
        self.events = deque()
        self.read_events(lambda event: isinstance(event, AcceptConnection))

    def send(self, event) -> None:
        self.sock.sendall(self.client.send(event))

    def read_events(self, until, timeout: float = 5) -> list:
        """Events from the server until one satisfies `until` (which is returned last)."""
        seen = []
        with gevent.Timeout(timeout):
            while True:
                while self.events:
                    seen.append(self.events.popleft())
                    if until(seen[-1]):
                        return seen
                data = self.sock.recv(4096)
                self.client.receive_data(data or None)
                self.events.extend(self.client.events())


def test_an_inline_read_socket_has_no_reader_greenlet_and_forgets_its_handshake():
    peer = Peer()
    assert isinstance(peer.ws.thread, InlineReader) and peer.ws.thread.is_alive()
    assert peer.ws.ws.handshake is _HANDSHAKEN
    assert not isinstance(peer.ws.ws.connection._events, deque)
    app = Flask(__name__)
    app.register_blueprint(routes.sock.bp)
    views = {rule.endpoint.rpartition(".")[2] for rule in app.url_map.iter_rules()}
    assert INLINE_READ_ROUTES <= views  # the views of the sockets read until they close, by name


def test_frames_arrive_while_the_handler_waits_and_a_timeout_leaves_the_reader_alive():
    peer = Peer()
    assert peer.ws.receive(timeout=0.05) is None and peer.ws.thread.is_alive()
    peer.send(TextMessage("one"))
    peer.send(TextMessage("two"))
    assert peer.ws.receive(timeout=5) == "one"
    assert peer.ws.receive(timeout=0) == "two"
    assert peer.ws.receive(timeout=0) is None


def test_pings_are_answered_and_pongs_recorded_while_it_waits():
    peer = Peer()
    peer.send(Ping(b"are you there"))
    peer.ws.pong_received = False
    peer.ws.sock.send(peer.ws.ws.send(Ping(b"server")))  # as Connection.ping does
    peer.read_events(lambda event: isinstance(event, Ping))
    peer.send(Pong(b"server"))
    assert peer.ws.receive(timeout=0.2) is None
    assert peer.ws.pong_received
    assert peer.read_events(lambda event: isinstance(event, Pong))[-1].payload == b"are you there"


def test_a_client_close_gets_its_reply_and_ends_the_reader():
    peer = Peer()
    peer.send(CloseConnection(code=4321, reason="bye"))
    with pytest.raises(ConnectionClosed):
        peer.ws.receive(timeout=5)
    assert not peer.ws.thread.is_alive() and peer.ws.close_reason == 4321
    reply = peer.read_events(lambda event: isinstance(event, CloseConnection))[-1]
    assert reply.code == 4321


def test_a_server_close_is_finished_by_join_which_reads_the_reply():
    peer = Peer()
    peer.ws.close(reason=1008, message="refused")
    assert peer.read_events(lambda event: isinstance(event, CloseConnection))[-1].code == 1008
    assert peer.ws.thread.is_alive()  # like a reader thread blocked in recv: it ends after the next chunk
    peer.send(CloseConnection(code=1008))
    peer.ws.thread.join(timeout=5)
    assert not peer.ws.thread.is_alive()


def test_a_dropped_connection_ends_the_reader_and_a_join_waits_no_longer_than_its_timeout():
    peer = Peer()
    peer.ws.close()
    started = time.monotonic()
    peer.ws.thread.join(timeout=0.1)  # the client never replies
    assert peer.ws.thread.is_alive() and time.monotonic() - started < 2
    peer.sock.close()
    peer.ws.thread.join(timeout=5)
    assert not peer.ws.thread.is_alive()


def test_the_green_inbox_forwards_in_order_in_a_greenlet_only_while_there_are_items():
    forwarded, ended = [], []

    def forward(item):
        forwarded.append((item, gevent.getcurrent()))
        return item is not CLOSE

    pending = SimpleQueue()  # what queue.SimpleQueue is in a patched process
    pending.put("a")
    inbox = _GreenInbox(forward, lambda: ended.append(True), pending)
    inbox.put("b")
    assert forwarded == []  # nothing runs until the putter yields
    gevent.sleep(0)
    assert [item for item, _ in forwarded] == ["a", "b"]
    assert not inbox._draining
    inbox.put("c")
    inbox.put(CLOSE)
    inbox.put("dropped")
    gevent.sleep(0)
    assert [item for item, _ in forwarded] == ["a", "b", "c", CLOSE] and ended == [True]
    assert forwarded[2][1] is forwarded[3][1]  # one greenlet per run of items
    inbox.put("late")
    gevent.sleep(0)
    assert len(forwarded) == 4
