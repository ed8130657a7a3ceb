"""aintandem-agent-sdk: let an agent in a sandbox talk to other agents through the Collaboration Bus.

    from aintandem_agent_sdk import BaseAgent, ContainerAgent, MessageType

    agent = BaseAgent("researcher", capabilities=["search"])

    @agent.on(MessageType.REQUEST)
    async def research(message):
        return {"answer": f"notes on {message.content['task']}"}

    async with ContainerAgent("sb-researcher", "http://127.0.0.1:8000", agent) as bus:
        await bus.run_forever()

Every exception the SDK raises on purpose derives from `BusError` (see `aintandem_agent_sdk.errors`). Sends take an
`idempotency_key`; a handler's sends follow from the message it handles (metadata.trace); `collaborate_with` requests
survive a restart (`pending_requests`, `wait_for_response`); `Skill`s and sandbox "any" route by capability.
"""

from aintandem_agent_sdk.agent import BaseAgent, Handler, Skill
from aintandem_agent_sdk.config import Backoff, ContainerAgentConfig, RetryPolicy
from aintandem_agent_sdk.container import ConnectionStatus, ContainerAgent, StatusCallback
from aintandem_agent_sdk.errors import (
    AgentStateError,
    AuthenticationError,
    BusConnectionError,
    BusError,
    BusRejected,
    BusServerError,
    BusTimeoutError,
    CollaborationFailed,
    CollaborationTimeout,
    ConfigurationError,
    NoHandler,
    PermissionDenied,
    UnknownCorrelationId,
)
from aintandem_agent_sdk.messages import AgentMessage, MessageType, PendingRequest, SendResult

__version__ = "0.1.0"

__all__ = [
    "AgentMessage",
    "AgentStateError",
    "AuthenticationError",
    "Backoff",
    "BaseAgent",
    "BusConnectionError",
    "BusError",
    "BusRejected",
    "BusServerError",
    "BusTimeoutError",
    "CollaborationFailed",
    "CollaborationTimeout",
    "ConfigurationError",
    "ConnectionStatus",
    "ContainerAgent",
    "ContainerAgentConfig",
    "Handler",
    "MessageType",
    "NoHandler",
    "PendingRequest",
    "PermissionDenied",
    "RetryPolicy",
    "SendResult",
    "Skill",
    "StatusCallback",
    "UnknownCorrelationId",
    "__version__",
]
