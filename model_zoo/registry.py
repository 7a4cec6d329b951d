"""Name -> builder registries, in the style of timm's ``register_model`` / ``create_model``.

Every searchable component family (decoder, bottleneck, attention, latent augmentation, loss, ...)
is a :class:`Registry`; a decorator registers a builder under a name, and lookups of an unknown
name raise an error that lists the valid names (and the closest one), so a typo in a YAML space
fails before any compute is spent.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from model_zoo.errors import UserError

T = TypeVar("T", bound=Callable[..., Any])


class UnknownComponentError(UserError, KeyError, ValueError):
    """An unregistered name was asked for; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A named family of components: ``@REG.register("name")`` then ``REG.get("name")``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str | None = None) -> Callable[[T], T]:
        key = name.lower()

        def deco(fn: T) -> T:
            if key in self._items and self._items[key] is not fn:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[key] = fn
            doc = help if help is not None else (fn.__doc__ or "").strip().splitlines()[:1]
            self._help[key] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return fn

        return deco

    def get(self, name: str) -> T:
        key = str(name).lower()
        if key not in self._items:
            raise UnknownComponentError(self.unknown_message(name))
        return self._items[key]

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name).lower(), list(self._items), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(self.names())}"

    def check(self, name: str) -> None:
        """Raise :class:`UnknownComponentError` unless ``name`` is registered."""
        self.get(name)

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        return {k: self._help[k] for k in self.names()}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
