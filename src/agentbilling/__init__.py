"""agentbilling: the billing service of an AI-agent platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Billing", "connect"]

if TYPE_CHECKING:
    from agentbilling.client import Billing, connect


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a submodule (the domain, a migration) does not load the service.
    if name in __all__:
        from agentbilling import client as facade

        return getattr(facade, name)
    raise AttributeError(name)
