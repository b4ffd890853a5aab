"""Frozen, slotted value classes that cost almost nothing to define.

``@value`` gives what ``@dataclass(frozen=True, slots=True)`` gives — an ``__init__`` from the
annotated fields (defaults and ``field(default_factory=...)`` included), ``__slots__``,
immutability, ``__eq__``/``__hash__`` over the fields, ``__repr__``, ``__match_args__`` — plus
:func:`replace`, :func:`fields` and :func:`asdict`. Why not ``dataclasses``: on the path of every
container start, importing it costs ~15 ms (it pulls in inspect, ast, dis, tokenize, enum) and
each decorated class ~0.5 ms more (it compiles an ``__init__``, ``__eq__``, ``__setattr__``... per
class, then rebuilds the class for its slots). Here nothing is compiled: the methods are shared
and read the class's field names, and the class is built once with ``type()``.

Type checkers see a frozen dataclass (PEP 681, ``dataclass_transform``). Imports nothing else
from dockyard.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    _T = TypeVar("_T")
else:
    def dataclass_transform(**_kwargs: object) -> object:
        return lambda f: f


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a value (dataclasses.FrozenInstanceError's counterpart)."""


_MISSING = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], _T]) -> _T:
    """A field whose default is made per instance (``dataclasses.field(default_factory=)``)."""
    return _Factory(default_factory)  # type: ignore[return-value]


def _init(self: Any, *args: object, **kwargs: object) -> None:
    cls = type(self)
    names: tuple[str, ...] = cls._fields
    if len(args) > len(names):
        raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments but "
                        f"{len(args)} were given")
    put = object.__setattr__
    for name, v in zip(names, args, strict=False):
        put(self, name, v)
    if len(args) < len(names) or kwargs:
        defaults: dict[str, object] = cls._defaults
        for name in names[len(args):]:
            if name in kwargs:
                v = kwargs.pop(name)
            else:
                v = defaults.get(name, _MISSING)
                if v is _MISSING:
                    raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
                if type(v) is _Factory:
                    v = v.make()
            put(self, name, v)
        if kwargs:
            raise TypeError(f"{cls.__name__}() got an unexpected (or repeated) keyword "
                            f"argument {next(iter(kwargs))!r}")
    post = getattr(self, "__post_init__", None)
    if post is not None:
        post()


def _setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _astuple(self: Any) -> tuple[object, ...]:
    return tuple([getattr(self, n) for n in self._fields])


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented  # type: ignore[no-any-return]
    return _astuple(self) == _astuple(other)


def _hash(self: Any) -> int:
    return hash(_astuple(self))


def _repr(self: Any) -> str:
    inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields)
    return f"{type(self).__qualname__}({inner})"


def _reduce(self: Any) -> tuple[object, ...]:
    return (type(self), _astuple(self))


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[_T]) -> type[_T]:
    """Make ``cls`` a frozen, slotted value class (see the module docstring)."""
    # not inspect.get_annotations: importing inspect is what this module avoids
    own = [n for n, a in cls.__dict__.get("__annotations__", {}).items()  # noqa: RUF063
           if not str(a).startswith(("ClassVar", "typing.ClassVar"))]
    inherited: tuple[str, ...] = ()
    defaults: dict[str, object] = {}
    for base in reversed(cls.__mro__[1:]):
        if "_fields" in base.__dict__:
            inherited += tuple(n for n in base._fields if n not in inherited)  # type: ignore[attr-defined]
            defaults.update(base._defaults)  # type: ignore[attr-defined]
    ns = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    for name in own:
        if name in ns:
            defaults[name] = ns.pop(name)
    names = inherited + tuple(n for n in own if n not in inherited)
    ns.update(__slots__=tuple(n for n in own if n not in inherited), _fields=names,
              _defaults=defaults, __match_args__=names, __init__=_init, __setattr__=_setattr,
              __delattr__=_delattr, __reduce__=_reduce, __qualname__=cls.__qualname__)
    for name, method in (("__eq__", _eq), ("__hash__", _hash), ("__repr__", _repr)):
        if name not in ns or (name == "__hash__" and ns[name] is None):
            ns[name] = method
    made: type[_T] = type(cls)(cls.__name__, cls.__bases__, ns)  # type: ignore[misc]
    return made


def fields(obj: object) -> tuple[str, ...]:
    """The field names of a value (or value class), in order."""
    names: tuple[str, ...] = (obj if isinstance(obj, type) else type(obj))._fields  # type: ignore[attr-defined]
    return names


def replace(obj: _T, **changes: object) -> _T:
    """A copy of ``obj`` with some fields changed (``dataclasses.replace``)."""
    values = {n: getattr(obj, n) for n in fields(obj)}
    values.update(changes)
    return type(obj)(**values)


def is_value(obj: object) -> bool:
    return "_fields" in type(obj).__dict__ and type(obj).__init__ is _init


def asdict(obj: object) -> dict[str, Any]:
    """Fields to a dict, recursing into values, tuples and lists (``dataclasses.asdict``)."""
    return {n: _plain(getattr(obj, n)) for n in fields(obj)}


def _plain(v: object) -> object:
    if is_value(v):
        return asdict(v)
    if isinstance(v, (tuple, list)):
        return type(v)(_plain(x) for x in v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
