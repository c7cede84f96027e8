"""genq: a self-hosted server for asynchronous generation jobs.

The SDK is `genq.Client` / `genq.AsyncClient` (HTTP only; see `genq.client`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]

if TYPE_CHECKING:
    from genq.client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    # the SDK is imported on first use, so `import genq` stays light for the server
    if name in ("Client", "AsyncClient"):
        import genq.client

        return getattr(genq.client, name)
    raise AttributeError(name)
