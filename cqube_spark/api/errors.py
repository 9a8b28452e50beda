"""The one error shape of the API: ``{"error": {"status": 401, "code": "unauthenticated", "message": "..."}}``."""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        self.status, self.code, self.message, self.field = status, code, message, field
        super().__init__(message)

    def body(self) -> dict:
        err = {"status": self.status, "code": self.code, "message": self.message}
        if self.field:
            err["field"] = self.field
        return {"error": err}
