"""Each operation declared once, two faces derived from it: a sync one and an async one.

An operation of an engine (or of a store) is written once, as a method that checks its
arguments and returns a plan: a generator that yields the I/O it needs and returns the
result (``Engine`` says what a plan yields). Decorated with ``operation``, the method
becomes the method of both faces:

- on a class that derives from ``Sync``, a plain method that runs the plan to the end
  (``self._run``) and returns its result;
- on one that derives from ``Async``, a coroutine function that awaits it
  (``self._arun``).

``stream`` does the same for a plan that also yields items for its caller (``Emit``):
an iterator on the sync face, an async iterator on the async face.

The faces' methods are real functions, made when a face class is (``__init_subclass__``),
with the declaration's name, docstring and signature (returning the plan's result), so
``help()``, ``inspect`` and the IDEs see them as written, and ``inspect.
iscoroutinefunction`` is true of the async ones. mypy reads the descriptors' typed
``__get__``: ``engine.create`` is ``(...) -> Run`` on a ``RunEngine`` and ``(...) ->
Awaitable[Run]`` on an ``AsyncRunEngine``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar, overload

__all__ = [
    "Async",
    "Emit",
    "Plan",
    "Sync",
    "adrive",
    "aitems",
    "drive",
    "items",
    "operation",
    "stream",
    "streaming",
]

P = ParamSpec("P")
S = TypeVar("S")  # the class an operation is declared on
R = TypeVar("R")
E = TypeVar("E")
#: A plan: a generator of the I/O steps an operation needs, returning its result.
Plan = Generator[Any, Any, R]


class Emit:
    """A stream plan's step that hands ``items`` to its caller, not to the I/O."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items


def drive(plan: Plan[R], perform: Callable[[Any], Any], catch: type[BaseException]) -> R:
    """Run ``plan`` to its end: each step it yields done by ``perform``, the answer sent
    back, an error of type ``catch`` thrown in (the plan may handle it); its result."""
    try:
        step = next(plan)
        while True:
            try:
                result = perform(step)
            except catch as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def adrive(
    plan: Plan[R], perform: Callable[[Any], Awaitable[Any]], catch: type[BaseException]
) -> R:
    """``drive``, each step awaited."""
    try:
        step = next(plan)
        while True:
            try:
                result = await perform(step)
            except catch as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def items(plan: Plan[None], perform: Callable[[Any], Any]) -> Iterator[Any]:
    """The items a stream plan hands out (``Emit``), as it hands them out; its other
    steps done by ``perform`` between (errors thrown in). Closing the iterator closes
    the plan."""
    with contextlib.closing(plan):
        step = next(plan, None)
        while step is not None:
            if type(step) is Emit:
                yield from step.items
                step = next(plan, None)
                continue
            try:
                result = perform(step)
            except Exception as exc:
                step = _next(plan.throw, exc)
            else:
                step = _next(plan.send, result)


async def aitems(plan: Plan[None], perform: Callable[[Any], Awaitable[Any]]) -> AsyncIterator[Any]:
    """``items``, each step awaited: closing the iterator (a client that hung up) stops
    it at once."""
    with contextlib.closing(plan):
        step = next(plan, None)
        while step is not None:
            if type(step) is Emit:
                for item in step.items:
                    yield item
                step = next(plan, None)
                continue
            try:
                result = await perform(step)
            except Exception as exc:
                step = _next(plan.throw, exc)
            else:
                step = _next(plan.send, result)


def _next(step: Callable[[Any], Any], value: Any) -> Any:
    """The plan's next step after ``step(value)`` (a send or a throw); None at its end."""
    try:
        return step(value)
    except StopIteration:
        return None


class operation(Generic[S, P, R]):
    """An operation written once (see the module): the method returns a plan."""

    def __init__(self, plan: Callable[Concatenate[S, P], Plan[R]]) -> None:
        self.plan: Callable[..., Plan[R]] = plan
        self.returns = _result_of(plan)
        self.__name__ = plan.__name__
        self.__doc__ = plan.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> operation[S, P, R]: ...
    @overload
    def __get__(self, obj: Sync, owner: type) -> Callable[P, R]: ...
    @overload
    def __get__(self, obj: Async, owner: type) -> Callable[P, Awaitable[R]]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        raise TypeError(f"{owner.__name__} is neither face: derive it from Sync or Async.")


class stream(Generic[S, P, E]):
    """A stream written once (see the module): the method returns a plan whose ``Emit``
    steps are the stream's items."""

    def __init__(self, plan: Callable[Concatenate[S, P], Plan[None]], item: str) -> None:
        self.plan: Callable[..., Plan[None]] = plan
        self.item = item
        self.__name__ = plan.__name__
        self.__doc__ = plan.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> stream[S, P, E]: ...
    @overload
    def __get__(self, obj: Sync, owner: type) -> Callable[P, Iterator[E]]: ...
    @overload
    def __get__(self, obj: Async, owner: type) -> Callable[P, AsyncIterator[E]]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        raise TypeError(f"{owner.__name__} is neither face: derive it from Sync or Async.")


def streaming(
    item: type[E],
) -> Callable[[Callable[Concatenate[S, P], Plan[None]]], stream[S, P, E]]:
    """``@streaming(RunEvent)``: the decorated method is a ``stream`` of that type."""

    def make(plan: Callable[Concatenate[S, P], Plan[None]]) -> stream[S, P, E]:
        return stream(plan, item.__name__)

    return make


def _result_of(plan: Callable[..., Any]) -> Any:
    """What a plan's result is, as its annotation says (``Plan[Run]``: ``Run``)."""
    returns = inspect.signature(plan, eval_str=False).return_annotation
    if isinstance(returns, str) and returns.startswith("Plan[") and returns.endswith("]"):
        return returns[5:-1]
    return returns


class Face:
    """What both faces share: on a subclass, each declared operation it inherits becomes
    a real method (``_make_face``), made by the face's own makers."""

    _makers: ClassVar[tuple[Callable[..., Any], Callable[..., Any], str]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        makers = getattr(cls, "_makers", None)  # None on Sync and Async themselves
        if makers is not None:
            _make_face(cls, *makers)


class Sync(Face):
    """The face whose operations run to the end before they return."""

    def _run(self, plan: Plan[R], name: str, object_id: str | None) -> R:
        raise NotImplementedError

    def _stream(self, plan: Plan[None], name: str, object_id: str | None) -> Iterator[Any]:
        raise NotImplementedError


class Async(Face):
    """The face whose operations are awaited."""

    async def _arun(self, plan: Plan[R], name: str, object_id: str | None) -> R:
        raise NotImplementedError

    def _astream(self, plan: Plan[None], name: str, object_id: str | None) -> AsyncIterator[Any]:
        raise NotImplementedError


def _make_face(
    cls: type,
    method: Callable[[Any, operation[Any, Any, Any]], Callable[..., Any]],
    streamer: Callable[[type, stream[Any, Any, Any]], Callable[..., Any]],
    iterator: str,
) -> None:
    """Put on ``cls`` a real method for each declared operation it inherits and does not
    define itself (the nearest declaration wins, as attribute lookup would have it)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, value in vars(klass).items():
            if name in seen or hasattr(value, "__face_of__"):
                continue  # a method made for a face above: look on for its declaration
            seen.add(name)
            if isinstance(value, operation):
                made, returns = method(cls, value), value.returns
            elif isinstance(value, stream):
                made, returns = streamer(cls, value), f"{iterator}[{value.item}]"
            else:
                continue
            made.__name__ = name
            made.__qualname__ = f"{cls.__qualname__}.{name}"
            made.__doc__ = value.plan.__doc__
            made.__module__ = cls.__module__
            made.__face_of__ = value  # type: ignore[attr-defined]
            signature = inspect.signature(value.plan, eval_str=False)
            made.__signature__ = signature.replace(  # type: ignore[attr-defined]
                return_annotation=returns
            )
            made.__annotations__ = {**value.plan.__annotations__, "return": returns}
            setattr(cls, name, made)


def _first_id(plan: Callable[..., Any]) -> str | None:
    """The name of an operation's first parameter after ``self`` if it names the object
    the operation is about (``*_id``): its value goes to telemetry's spans."""
    params = list(inspect.signature(plan).parameters)[1:]
    return params[0] if params and params[0].endswith("_id") else None


def _sync_method(cls: type[Sync], op: operation[Any, Any, Any]) -> Callable[..., Any]:
    run, plan, name, first = cls._run, op.plan, op.__name__, _first_id(op.plan)

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        object_id = args[0] if args else kwargs.get(first) if first else None
        return run(self, plan(self, *args, **kwargs), name, object_id)

    return method


def _async_method(cls: type[Async], op: operation[Any, Any, Any]) -> Callable[..., Any]:
    arun, plan, name, first = cls._arun, op.plan, op.__name__, _first_id(op.plan)

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        object_id = args[0] if args else kwargs.get(first) if first else None
        return await arun(self, plan(self, *args, **kwargs), name, object_id)

    return method


def _streamer(driver: str) -> Callable[[type, stream[Any, Any, Any]], Callable[..., Any]]:
    """How a face makes a stream's method: the plan handed to its ``driver`` (``_stream``,
    ``_astream``), which returns the iterator."""

    def make(cls: type, op: stream[Any, Any, Any]) -> Callable[..., Any]:
        hand, plan, name = getattr(cls, driver), op.plan, op.__name__

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return hand(self, plan(self, *args, **kwargs), name, None)

        return method

    return make


Sync._makers = (_sync_method, _streamer("_stream"), "Iterator")
Async._makers = (_async_method, _streamer("_astream"), "AsyncIterator")
