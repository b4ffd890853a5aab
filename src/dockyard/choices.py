"""Enum-like named constants that cost nothing to import.

``import enum`` costs ~5 ms on every start of the runtime (it pulls in functools, collections,
operator, keyword, reprlib and types), and ``re`` and ``signal`` import it too. The runtime's
few enumerations only need identity, a name and a value, so they subclass :class:`Choice`:

    class Colour(Choice):
        RED: ClassVar[Colour]

    Colour.RED = Colour("RED", "red")

Members compare by identity (``is``), hash by identity, and pickle back to the same member.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Self


class Choice:
    __slots__ = ("name", "value")

    name: str
    value: str

    def __init__(self, name: str, value: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__}.{self.name} is read-only")

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.name}: {self.value!r}>"

    def __reduce__(self) -> tuple[object, ...]:
        return (getattr, (type(self), self.name))

    @classmethod
    def members(cls) -> tuple[Self, ...]:
        """Every member, in definition order."""
        return tuple(v for v in vars(cls).values() if isinstance(v, cls))
