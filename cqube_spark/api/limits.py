"""The request body limit, as ASGI middleware (before any route runs)."""
from __future__ import annotations

import json
import re

from cqube_spark.api.errors import ApiError

UPLOAD_PUT = re.compile(r"^/emission/uploads/[0-9a-f]{32}/content$")


class BodyLimit:
    """A body sent without Content-Length (chunked) is read here first, up to ``limit`` bytes, and handed on
    whole; one byte more is a 413 before any route runs. The local upload route is left to count its own
    stream against the declared ``size_bytes``; a body with Content-Length is checked by the header."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or ()) if scope["type"] == "http" else {}
        if scope["type"] != "http" or b"content-length" in headers or UPLOAD_PUT.match(scope["path"]) \
                or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.limit:
                err = json.dumps(ApiError(413, "too_large", f"request body over the limit of {self.limit} "
                                                             "bytes").body()).encode()
                await send({"type": "http.response.start", "status": 413, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(err)).encode()),
                    (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": err})
                return
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
