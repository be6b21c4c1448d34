"""The one exception of the retrieval app that views turn into an HTTP answer."""

from __future__ import annotations


class QueryError(Exception):
    """A query that cannot be answered; ``status`` is the HTTP status to give."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
