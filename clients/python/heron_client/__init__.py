"""heron-client: talk to a Heron moderation server from any Python chat service.

Depends on httpx only. See docs/integrations.md for what to send and how to apply each action.
"""

from heron_client._core import RetryPolicy
from heron_client.client import AsyncHeronClient, HeronClient
from heron_client.errors import (
    HeronAPIError,
    HeronError,
    HeronUnavailable,
    WebhookReplayError,
    WebhookVerificationError,
)
from heron_client.models import (
    ACTIONS,
    REMOVING_ACTIONS,
    Attachment,
    Author,
    Context,
    Decision,
    DecisionPage,
    Guild,
    Message,
    ModerateResult,
    Pending,
    Reason,
    Revision,
    Webhook,
    WebhookEvent,
    new_message_id,
)
from heron_client.webhooks import WebhookVerifier, sign, verify_signature

__version__ = "0.1.0"
__all__ = [
    "ACTIONS",
    "REMOVING_ACTIONS",
    "AsyncHeronClient",
    "Attachment",
    "Author",
    "Context",
    "Decision",
    "DecisionPage",
    "Guild",
    "HeronAPIError",
    "HeronClient",
    "HeronError",
    "HeronUnavailable",
    "Message",
    "ModerateResult",
    "Pending",
    "Reason",
    "Revision",
    "RetryPolicy",
    "Webhook",
    "WebhookEvent",
    "WebhookReplayError",
    "WebhookVerificationError",
    "WebhookVerifier",
    "new_message_id",
    "sign",
    "verify_signature",
]
