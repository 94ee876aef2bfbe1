"""JSON errors: ``{"detail": ..., "hint": ...}`` everywhere, 422s naming the field and the fix."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "Conflict",
    "DomainError",
    "Forbidden",
    "Internal",
    "Invalid",
    "NotFound",
    "TooLarge",
    "Unauthorized",
    "install_error_handlers",
]


class DomainError(Exception):
    """A refusal of the registry's logic, the same from REST and from Kafka: what, and the fix.

    A route answers it with its kind's status (here, the one place); a Kafka handler lets it go
    to the topic's DLQ, where its text (hint included) is the error header.
    """

    status = 400

    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail + (f" (hint: {hint})" if hint else ""))
        self.detail, self.hint = detail, hint


class Unauthorized(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class TooLarge(DomainError):
    status = 413


class Invalid(DomainError):
    status = 422


class Internal(DomainError):
    """The registry's own state or configuration is broken (e.g. a secret its key cannot decrypt)."""

    status = 500


def _body(detail: Any, hint: str | None) -> dict[str, Any]:
    return {"detail": detail, **({"hint": hint} if hint else {})}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(_body(exc.detail, exc.hint), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"] if p != "body")
            problems.append(f"{field or 'body'}: {error['msg']}")
        return JSONResponse(
            _body("; ".join(problems), "check the request body against the API reference in README.md"),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body(exc.detail, None), status_code=exc.status_code)
