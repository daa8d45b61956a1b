"""Policies by name, so configs, sweeps and both drivers pick them the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtins() -> None:
    if _REGISTRY:
        return
    from sim.policies.builtin import BUILTINS

    for cls in BUILTINS:
        register(cls.name)(cls)


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def check_name(name: str) -> None:
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown policy {name!r}; expected one of {names()}")


def options(name: str) -> dict[str, Any]:
    """A policy's options and their defaults (its constructor's keyword arguments), for
    `lorasim policies` and error messages: `policy_options: {name: {option: value}}`."""
    import inspect

    params = inspect.signature(get(name)).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in params if p.kind in kinds}


def create(name: str, **options: Any):
    check_name(name)
    return _REGISTRY[name](**options)


def get(name: str):
    """The policy class (factory) registered under `name`."""
    check_name(name)
    return _REGISTRY[name]
