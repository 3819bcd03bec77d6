"""agentbilling: the billing service of an AI-agent platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentbilling.version import __version__

__all__ = ["Billing", "__version__", "connect"]

if TYPE_CHECKING:
    from agentbilling.client import Billing, connect


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a submodule (the domain, a migration) does not load the service.
    if name in ("Billing", "connect"):
        from agentbilling import client

        return getattr(client, name)
    raise AttributeError(name)
