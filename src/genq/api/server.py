"""uvicorn's server for genq: when it begins to stop (SIGTERM, Ctrl-C), genq's event
streams close and its long-polls answer before uvicorn waits for connections to end;
else each open stream would hold the shutdown until uvicorn's timeout and be cancelled
with an error."""

from __future__ import annotations

import socket

import uvicorn

from genq.api.front import Front


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Front) -> None:
        super().__init__(config)
        self.genq_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.genq_app.feeds.close()
        await super().shutdown(sockets)
