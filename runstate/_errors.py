"""Every refusal runstate makes, as one exception tree.

    RunStateError                  (root; carries .http_status and .to_dict())
    ├── ValidationError            400  bad input: a field, metadata, tool outputs, a URL
    ├── InvalidTransitionError     409  the status does not allow the event (400 where
    │                                   the declaration says: a cancel, tool outputs)
    ├── ActiveRunError             400  the group already has an active object (a thread,
    │                                   its run)
    ├── LeaseError                 409  the object is leased to another worker, or to none
    ├── ObjectNotFoundError        404  no object with that id
    │   ├── RunNotFoundError            ... no run
    │   └── ResponseNotFoundError       ... no response
    ├── IdempotencyError           409  an idempotency key used again with other parameters
    ├── ConcurrentUpdateError      409  the object kept changing under us; nothing was written
    └── StoreError                 503  the store is unreachable, corrupt or not ours

Each error knows the HTTP status and the JSON body an OpenAI-compatible server sends
for it, so a server maps it with one line: ``return JSONResponse(err.to_dict(),
status_code=err.http_status)``. Errors of the libraries underneath (``transitions``,
``sqlite3``) are translated into these at one boundary, ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any


class RunStateError(Exception):
    """The root of every error runstate raises on purpose."""

    http_status = 500
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The body an OpenAI-compatible server answers with."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class ValidationError(RunStateError, ValueError):
    """Input that does not have the shape or limits the API allows."""

    http_status = 400


class InvalidTransitionError(RunStateError):
    """The run's status does not allow the requested event."""

    http_status = 409

    def __init__(self, message: str, *, status: str, event: str, http_status: int = 409):
        super().__init__(message)
        self.status = status
        self.event = event
        self.http_status = http_status


class ActiveRunError(RunStateError):
    """A new run was asked for on a thread that already has an active one."""

    http_status = 400

    def __init__(self, thread_id: str, run_id: str):
        super().__init__(f"Thread {thread_id} already has an active run {run_id}.")
        self.thread_id = thread_id
        self.run_id = run_id


class LeaseError(RunStateError):
    """A worker acted on a run whose lease it does not hold."""

    http_status = 409


class ObjectNotFoundError(RunStateError):
    """No object has the given id (a store says so; each engine refines it by its
    object's noun: ``RunNotFoundError``, ``ResponseNotFoundError``)."""

    http_status = 404

    def __init__(self, object_id: str, noun: str = "object"):
        super().__init__(f"No {noun} found with id '{object_id}'.")
        self.object_id = object_id


class RunNotFoundError(ObjectNotFoundError):
    """No run has the given id."""

    def __init__(self, run_id: str, noun: str = "run"):
        super().__init__(run_id, noun)
        self.run_id = run_id


class ResponseNotFoundError(ObjectNotFoundError):
    """No response has the given id."""

    def __init__(self, response_id: str, noun: str = "response"):
        super().__init__(response_id, noun)
        self.response_id = response_id


class IdempotencyError(RunStateError):
    """An idempotency key was used again with other parameters than the first time."""

    http_status = 409

    def __init__(self, key: str):
        super().__init__(
            f"Idempotency key {key!r} was first used with other parameters; a key may only "
            "be used again with the same ones.",
            param="idempotency_key",
        )
        self.key = key


class ConcurrentUpdateError(RunStateError):
    """The run changed between read and write more often than the engine retries."""

    http_status = 409


class StoreError(RunStateError):
    """The store cannot be used: unreachable, locked for too long, corrupt or foreign."""

    http_status = 503
    error_type = "server_error"
