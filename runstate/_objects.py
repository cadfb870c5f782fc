"""ObjectEngine and AsyncObjectEngine: the engine for any declared lifecycle.

``RunEngine`` and ``ResponseEngine`` name their objects' operations (``complete``,
``submit_tool_outputs``); an ``ObjectEngine`` serves a lifecycle that a service declares
itself (``Definition`` and ``declare``) with the same loop, claims, leases, sweeps,
streams and stores, and fires its events by name: ``engine.fire(id, "finish")``. Its
objects follow the ``ObjectModel`` protocol. ``docs/adding-a-lifecycle.md`` walks
through one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

from ._clock import Clock
from ._definitions import DEFINITIONS, Definition
from ._engine import AsyncFace, Engine, ListPage, Plan, SyncFace
from ._errors import ValidationError
from ._faces import operation
from ._lifecycle import Lifecycle
from ._model import Status
from ._validate import require_string
from .stores import Order

__all__ = ["AsyncObjectEngine", "ObjectEngine", "ObjectModel"]

M = TypeVar("M", bound="ObjectModel")


class ObjectModel(Protocol):
    """What an object of a declared lifecycle has, for the engine and the stores.

    ``KIND`` files it in a store (lifecycles that share a kind share their objects:
    both run versions are ``"run"``); ``object`` is its public name (events are named
    ``<object>.<status>``); ``version`` says which of its kind's lifecycles decides it
    (any constant where the kind has one). ``to_dict()`` is its public JSON shape, which
    the stores keep; ``from_stored(data)`` rebuilds it from that (no checks: runstate
    wrote it); ``copy()`` is a copy that a change may alter. ``new(...)`` makes one for
    ``ObjectEngine.create``, from the fields a caller gives, checked (a
    ``ValidationError`` for a bad one)."""

    KIND: ClassVar[str]
    id: str
    status: Any  # a member of the definition's Status enum
    created_at: int
    expires_at: int | None

    @property
    def object(self) -> str: ...

    @property
    def version(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...

    def copy(self: M) -> M: ...

    @classmethod
    def from_stored(cls: type[M], data: dict[str, Any]) -> M: ...

    @classmethod
    def new(
        cls: type[M],
        *,
        id: str,
        status: Any,
        created_at: int,
        expires_at: int | None,
        **fields: Any,
    ) -> M: ...


class ObjectPlans(Engine[Any]):
    """What both faces do, as plans (see ``Engine``)."""

    def __init__(
        self,
        definition: Definition,
        store: Any = None,
        clock: Clock | None = None,
        *,
        ttl: int = 3600,
        lease_seconds: int = 60,
        max_attempts: int = 3,
        id_factory: Callable[[str], str] | None = None,
        idempotency_window: int = 86_400,
    ) -> None:
        if not isinstance(definition, Definition) or DEFINITIONS.get(definition.name) is not (
            definition
        ):
            raise ValidationError(
                "Invalid 'definition': expected a runstate.Definition made known with "
                "runstate.declare().",
                param="definition",
            )
        lifecycle = Lifecycle(definition, clock, ttl, id_factory)
        super().__init__(
            store,
            lifecycle,
            {},
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            idempotency_window=idempotency_window,
        )

    # --- the operations: each face's methods are made from these (see ``_faces``) --------

    @operation
    def create(self, /, *, idempotency_key: str | None = None, **fields: Any) -> Plan[Any]:
        """A new object in the definition's initial status, made by its model's ``new``
        from ``fields``; its events ``<object>.created`` and ``<object>.<initial>``. With
        ``idempotency_key``, as ``RunEngine.create``."""
        return self._p_create(fields, idempotency_key)

    @operation
    def list(
        self,
        *,
        group: str | None = None,
        status: Status | str | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Plan[ListPage[Any]]:
        """A page of the lifecycle's objects by ``created_at`` (of one ``group``, and in
        one ``status``, if given), in the public list shape."""
        return self._p_list_objects(group, status, limit, order, after, before)

    @operation
    def fire(
        self, object_id: str, event: str, argument: Any = None, *, worker_id: str | None = None
    ) -> Plan[Any]:
        """Fire ``event`` on the object, with its ``argument`` if it takes one; with
        ``worker_id``, refused (``LeaseError``) unless that worker holds the lease."""
        return self._p_fire(object_id, event, argument, worker_id)

    def _lifecycle_of(self, obj: Any) -> Lifecycle:
        return self.lifecycle

    def _p_create(self, fields: dict[str, Any], idempotency_key: str | None) -> Plan[Any]:
        obj, steps = self.lifecycle.new_object(**fields)
        made = yield from self._p_insert(obj, steps, None, self._key(idempotency_key, obj))
        return made

    def _p_list_objects(
        self,
        group: str | None,
        status: Status | str | None,
        limit: int,
        order: Order,
        after: str | None,
        before: str | None,
    ) -> Plan[ListPage[Any]]:
        if group is not None:
            require_string(group, "group")
        wanted = None if status is None else self.lifecycle.status_of(status)
        objs, has_more = yield from self._p_list(group, wanted, limit, order, after, before)
        return ListPage(objs, has_more)

    def _p_fire(
        self, object_id: str, event: str, argument: Any, worker_id: str | None
    ) -> Plan[Any]:
        require_string(event, "event")
        if event not in self.definition.sources:
            raise ValidationError(
                f"Unknown event {event!r}; {self.definition.name!r} has "
                f"{sorted(self.definition.sources)}.",
                param="event",
            )
        return (yield from self._p_step(object_id, event, argument, worker_id))


class ObjectEngine(SyncFace[Any], ObjectPlans):
    """Objects of ``definition``'s lifecycle in ``store`` (default: a new
    ``MemoryStore``), timed by ``clock``: ``ttl`` is the seconds from creation to the
    deadline past which the definition's time-out fires. ``lease_seconds`` and
    ``max_attempts`` are as for runs."""


class AsyncObjectEngine(AsyncFace[Any], ObjectPlans):
    """``ObjectEngine`` for asyncio, on an async store: the same methods, awaitable."""
