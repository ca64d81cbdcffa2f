"""Domain errors. The API maps them to HTTP answers; activities map them to non-retryable failures.

TailorError
├── NotFound          an id that does not exist (HTTP 404)
└── InvalidInput      input that names a field and what is wrong with it (HTTP 422)
    └── InvalidRows   many rows of one upload wrong at once, each named (HTTP 422)
"""

from __future__ import annotations

from collections.abc import Sequence


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

    @property
    def problems(self) -> list[tuple[str, str]]:
        """Every (field, message) found; one here, several for ``InvalidRows``."""
        return [(self.field, self.message)]


class InvalidRows(InvalidInput):
    """An upload with wrong rows (or a wrong file): every problem, each field naming its row
    (``rows[3].price``). ``total`` counts them all when only the first few are listed."""

    def __init__(self, problems: Sequence[tuple[str, str]], *, total: int | None = None) -> None:
        total = len(problems) if total is None else total
        field, message = problems[0]
        more = f" (and {total - 1} more)" if total > 1 else ""
        super().__init__("rows", f"nothing was applied: {field}: {message}{more}")
        self._problems = list(problems)

    @property
    def problems(self) -> list[tuple[str, str]]:
        return list(self._problems)
