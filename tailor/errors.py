"""Domain errors. The API maps them to HTTP answers; activities map them to non-retryable failures.

TailorError
├── NotFound          an id that does not exist (HTTP 404)
└── InvalidInput      input that names a field and what is wrong with it (HTTP 422)
"""

from __future__ import annotations


class TailorError(Exception):
    pass


class NotFound(TailorError):
    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident!s} not found")
        self.kind = kind
        self.ident = ident


class InvalidInput(TailorError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
