"""The SDK's private parts on their own (no bus): the reconnect state machine and the mailbox's bookkeeping."""

from __future__ import annotations

import asyncio

import pytest

from aintandem_agent_sdk import AgentMessage, BusRejected, MessageType
from aintandem_agent_sdk._connection import MAX_CREDENTIAL_RECOVERIES, Phase, ReconnectState, socket_url
from aintandem_agent_sdk._mailbox import Mailbox
from aintandem_agent_sdk.cursor import Cursor


def test_the_reconnect_state_moves_only_along_its_transitions_and_a_welcome_resets_it():
    state = ReconnectState()
    assert state.phase is Phase.CONNECTING
    assert state.attempt_failed() == 1 and state.phase is Phase.WAITING
    with pytest.raises(RuntimeError):
        state.welcomed()  # waiting: nothing to welcome
    state.waited()
    assert state.attempt_failed() == 2
    state.waited()
    assert [state.may_recover_credentials() for _ in range(MAX_CREDENTIAL_RECOVERIES + 1)] == [True, True, False]
    assert state.may_reregister() and not state.may_reregister()
    state.refusal = {"message": "no"}
    state.welcomed()
    assert (state.phase, state.failures, state.recoveries, state.reregistered, state.refusal) == (
        Phase.CONNECTED, 0, 0, False, {})
    state.retry_now()  # going away: at once
    state.refusal = {"message": "revoked"}
    assert state.take_refusal() == {"message": "revoked"} and state.refusal == {}
    state.give_up(BusRejected(1008, "unauthorized", "revoked"))
    assert state.phase is Phase.FAILED and state.fatal.code == "unauthorized"
    for move in (state.retry_now, state.attempt_failed, state.welcomed):
        with pytest.raises(RuntimeError):
            move()


def test_the_socket_url_resumes_after_the_cursor():
    assert socket_url("https://bus:8443/x", "sb 1", 7) == "wss://bus:8443/x/ws/sandboxes/sb%201?since=7"


def test_the_mailbox_skips_rerouted_entries_and_starts_over_on_a_reset_mailbox():
    async def scenario():
        frames: list[dict] = []

        async def send_frame(frame):
            frames.append(frame)
            return True

        async def unused(*args, **kwargs):
            raise AssertionError("not expected")

        class Agent:
            async def handle(self, message):
                return None

        mailbox = Mailbox("sb", Cursor("sb"), Agent(), send_frame=send_frame, request=unused, reply=unused,
                          claim_response=lambda message: False)
        message = AgentMessage("m1", "other", "sb", "a", "any", MessageType.NOTIFICATION, {}, 0.0, seq=1)
        await mailbox.on_message(message)
        mailbox.on_rerouted(2)  # taken back while we were away: not ours any more
        assert mailbox.position == 0  # seq 1 is still queued
        handler = asyncio.create_task(mailbox.handler_loop())
        while mailbox.position < 2:
            await asyncio.sleep(0.01)
        handler.cancel()
        assert frames == [{"type": "ack", "seq": 1}]
        assert mailbox.on_welcome({"head_seq": 5})
        assert not mailbox.on_welcome({"head_seq": 1})  # an older bus's mailbox ends before our cursor: reconnect
        assert mailbox.position == 0
        mailbox.cursor.reset(7)
        ahead = {"head_seq": 4, "resumed_from": 3, "cursor_ahead": True}  # a bus that says so: resume where it does
        assert mailbox.on_welcome(ahead) and mailbox.position == 3

    asyncio.run(scenario())
