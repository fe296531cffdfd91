"""Domain errors. Only `service.app` turns them into HTTP responses; nothing below it knows HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

SUMMARY_PROBLEMS = 5  # problems spelt out in a one-line message; the others are counted


@dataclass(frozen=True)
class Problem:
    """One bad value: where it is (record index and field), what rule it broke, and the value."""

    index: int | None
    field: str | None
    msg: str
    type: str
    input: Any = None


class ServiceError(Exception):
    """Base of every error a request can cause; carries its HTTP status for the handler."""

    status_code: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR


class ModelNotFound(ServiceError):
    status_code = HTTPStatus.NOT_FOUND

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name[:80]!r} not found")
        self.name = name


class VersionNotFound(ServiceError):
    status_code = HTTPStatus.NOT_FOUND

    def __init__(self, name: str, version: str, served: str) -> None:
        super().__init__(
            f"model {name!r} has no version {version[:80]!r} loaded (serving {served!r})"
        )


class ModelNotReady(ServiceError):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, name: str, reason: str | None) -> None:
        super().__init__(f"model {name!r} is not ready: {reason or 'not loaded yet'}")
        self.name = name


class InvalidInput(ServiceError):
    """The request parsed, but some values break the model's contract (one Problem each).

    `problems` are the ones listed (at most `validation.MAX_PROBLEMS` from a request);
    `not_listed` counts the others found.
    """

    status_code = HTTPStatus.UNPROCESSABLE_ENTITY

    def __init__(
        self,
        problems: list[Problem],
        location: tuple[str, ...] = ("body", "records"),
        not_listed: int = 0,
    ) -> None:
        texts = [_describe(p) for p in problems[:SUMMARY_PROBLEMS]]
        super().__init__(summary(texts, len(problems) + not_listed))
        self.problems = problems
        self.location = location
        self.not_listed = not_listed

    def locations(self) -> list[tuple[str | int, ...]]:
        """FastAPI-style `loc` of each problem: the location, then record index, then field."""
        return [
            (
                *self.location,
                *(() if p.index is None else (p.index,)),
                *(() if p.field is None else (p.field,)),
            )
            for p in self.problems
        ]


class MalformedBody(InvalidInput):
    """The body is not parseable JSON or CSV at all."""

    status_code = HTTPStatus.BAD_REQUEST

    def __init__(
        self,
        msg: str,
        kind: str = "json_invalid",
        location: tuple[str, ...] = ("body",),
        index: int | None = None,
    ) -> None:
        super().__init__([Problem(index, None, msg, kind)], location)


class BatchTooLarge(InvalidInput):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE

    def __init__(self, count: int, limit: int) -> None:
        msg = f"batch of {count} records is over the limit of {limit} records per request"
        super().__init__([Problem(None, "records", msg, "too_long")], ("body",))


class BadTensor(ServiceError):
    """An Open Inference Protocol request whose tensors do not fit the model's inputs.

    The message is the protocol's `error` string. Problems with the inputs' tensors and values
    also come as `problems` (field: the input, index: the element), the first
    `validation.MAX_PROBLEMS` of them, and `not_listed` counts the others.
    """

    status_code = HTTPStatus.BAD_REQUEST

    def __init__(
        self, message: str, problems: list[Problem] | None = None, not_listed: int = 0
    ) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.not_listed = not_listed


class TooManyRows(BadTensor):
    """A V2 input with more rows than one request may carry: `BatchTooLarge` in tensor terms."""

    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE

    def __init__(self, name: str, rows: int, limit: int) -> None:
        super().__init__(f"input {name!r} has {rows} rows; at most {limit} per request")


class BodyTooLarge(ServiceError):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over the limit of {limit} bytes")


class UnsupportedMediaType(ServiceError):
    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE

    def __init__(self, content_type: str, accepted: tuple[str, ...]) -> None:
        super().__init__(
            f"content type {content_type[:80]!r} is not supported; use {' or '.join(accepted)}"
        )


class AdminDisabled(ServiceError):
    """No admin token is configured, so admin routes do not exist."""

    status_code = HTTPStatus.NOT_FOUND

    def __init__(self) -> None:
        super().__init__("admin endpoints are disabled (set PREDICT_ADMIN_TOKEN to enable them)")


class Unauthenticated(ServiceError):
    status_code = HTTPStatus.UNAUTHORIZED

    def __init__(self) -> None:
        super().__init__("missing bearer token (send 'Authorization: Bearer <token>')")


class Forbidden(ServiceError):
    status_code = HTTPStatus.FORBIDDEN

    def __init__(self) -> None:
        super().__init__("invalid admin token")


class MissingApiKey(ServiceError):
    status_code = HTTPStatus.UNAUTHORIZED

    def __init__(self) -> None:
        super().__init__(
            "missing API key (send 'Authorization: Bearer <key>' or 'X-API-Key: <key>')"
        )


class InvalidApiKey(ServiceError):
    status_code = HTTPStatus.FORBIDDEN

    def __init__(self) -> None:
        super().__init__("invalid API key")


class BodyTimeout(ServiceError):
    """The body did not arrive in time: a stalled or deliberately slow client."""

    status_code = HTTPStatus.REQUEST_TIMEOUT

    def __init__(self, seconds: float) -> None:
        super().__init__(f"request body not received within {seconds:g} seconds")


class RegistryUnreadable(ServiceError):
    """The registry folder cannot be listed; whatever was loaded keeps serving."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the registry folder cannot be read ({reason}); loaded models still serve"
        )


class ArtefactError(Exception):
    """A model version on disk cannot be served; it is refused and the reason is reported."""


class ArtefactMismatch(ArtefactError):
    """The files disagree with the manifest: tampered, truncated, or built for another contract."""


class SelfCheckFailed(ArtefactError):
    """The model loads but does not reproduce the probabilities recorded at export."""


def summary(texts: list[str], total: int) -> str:
    """The first few of `total` problems in one line (from their texts), then how many more."""
    shown = texts[:SUMMARY_PROBLEMS]
    more = total - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _describe(problem: Problem) -> str:
    where = []
    if problem.index is not None:
        where.append(f"record {problem.index}")
    if problem.field is not None:
        where.append(f"field {problem.field!r}")
    return f"{', '.join(where)}: {problem.msg}" if where else problem.msg
