"""genq's HTTP layer: the canonical `/v1` API, public files, and (later) compat faces."""

from genq.api.app import create_app

__all__ = ["create_app"]
