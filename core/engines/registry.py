"""Engine kind → engine, created on first use.

The factories of the built-in kinds are import paths, so building a registry imports nothing
heavy: a bot process that never runs a diffusers job never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, cast

from core.ports import Engine

__all__ = ["BUILTIN_ENGINES", "EngineFactory", "EngineRegistry", "UnknownEngine", "lazy_factory"]

EngineFactory = Callable[[], Engine]

# kind → "module:Class"; the class is imported when the kind is first asked for.
BUILTIN_ENGINES: Mapping[str, str] = {
    "diffusers": "core.engines.diffusers:DiffusersEngine",
    "openai": "core.engines.openai:OpenAIEngine",
    "fake": "core.engines.fake:FakeEngine",
}


class UnknownEngine(LookupError):
    """No factory is registered for the engine kind."""


def lazy_factory(path: str, **kwargs: Any) -> EngineFactory:
    """A factory that imports ``module:Class`` when called and builds it with ``kwargs``."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:Class', got {path!r}")

    def build() -> Engine:
        cls = getattr(importlib.import_module(module_name), attr)
        return cast(Engine, cls(**kwargs))

    return build


class EngineRegistry:
    """Engines by kind (``diffusers``, ``openai``, ``fake``), each built once, when first needed.

    ``options`` holds constructor keyword arguments per built-in kind, e.g.
    ``{"diffusers": {"device": "cuda"}, "openai": {"api_key": ...}}``; ``register`` adds or
    replaces a kind with any zero-argument factory (a class, a lambda, ``lazy_factory(...)``).
    """

    def __init__(
        self,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        builtins: bool = True,
    ) -> None:
        options = options or {}
        unknown = set(options) - set(BUILTIN_ENGINES)
        if unknown:
            known = ", ".join(sorted(BUILTIN_ENGINES))
            raise UnknownEngine(
                f"options for unknown engine kinds {sorted(unknown)} (known: {known})"
            )
        self._factories: dict[str, EngineFactory] = {}
        self._engines: dict[str, Engine] = {}
        if builtins:
            for kind, path in BUILTIN_ENGINES.items():
                self._factories[kind] = lazy_factory(path, **options.get(kind, {}))

    def register(self, kind: str, factory: EngineFactory) -> None:
        """Add or replace the factory for ``kind`` (an engine already built for it is dropped)."""
        self._factories[kind] = factory
        self._engines.pop(kind, None)

    def put(self, kind: str, engine: Engine) -> None:
        """Use an already built engine for ``kind`` (handy in tests)."""
        self._factories[kind] = lambda: engine
        self._engines[kind] = engine

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    @property
    def built(self) -> Mapping[str, Engine]:
        """The engines built so far, by kind."""
        return dict(self._engines)

    def __contains__(self, kind: object) -> bool:
        return kind in self._factories

    def get(self, kind: str) -> Engine:
        """The engine for ``kind``, built on first use; ``UnknownEngine`` if none is registered."""
        engine = self._engines.get(kind)
        if engine is None:
            factory = self._factories.get(kind)
            if factory is None:
                known = ", ".join(self.kinds) or "none"
                raise UnknownEngine(f"unknown engine {kind!r} (known: {known})")
            engine = self._engines[kind] = factory()
        return engine
