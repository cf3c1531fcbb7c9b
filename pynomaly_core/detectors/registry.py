"""The detector registry: data describing every detector, and ``create`` to build one.

Each entry says what a detector is (family, framework, supervision), what it costs
(how fit and score time grow with rows ``n`` and features ``d``), whether it can use
a GPU, its default parameters, and which extra must be installed for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass, field
from typing import Any

from pynomaly_core.detectors.base import BaseDetector, DetectorError
from pynomaly_core.detectors.targets import import_target


class MissingExtraError(ImportError):
    """The detector's framework is not installed; the message names the extra."""


@dataclass(frozen=True)
class DetectorSpec:
    """One registry entry.

    ``target`` is ``"module:Class"`` of the Pynomaly class that implements the
    contract; ``wraps`` names the reference implementation it adapts (if any) and is
    passed to the class as its ``model`` argument.
    """

    name: str
    family: str
    framework: str
    target: str
    supervision: str = "unsupervised"
    gpu: bool = False
    cost_class: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    extra: str | None = None
    requires_module: str | None = None
    wraps: str | None = None
    description: str = ""

    @property
    def installed(self) -> bool:
        return (
            self.requires_module is None
            or importlib.util.find_spec(self.requires_module) is not None
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "framework": self.framework,
            "supervision": self.supervision,
            "gpu": self.gpu,
            "cost_class": self.cost_class,
            "defaults": dict(self.defaults),
            "extra": self.extra,
            "installed": self.installed,
            "description": self.description,
        }


_REGISTRY: dict[str, DetectorSpec] = {}


def register(spec: DetectorSpec) -> DetectorSpec:
    """Add ``spec`` to the registry (names are case-sensitive and unique).

    Registering an identical spec again is a no-op, so a catalog module may be
    imported twice (e.g. once as ``python -m``); a different spec under a taken
    name raises ``ValueError``.
    """
    if spec.name in _REGISTRY:
        if _REGISTRY[spec.name] == spec:
            return spec
        raise ValueError(f"detector {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    if not _REGISTRY:
        importlib.import_module("pynomaly_core.detectors.catalog")


def available(*, installed_only: bool = False) -> list[DetectorSpec]:
    """All registry entries, sorted by name (``installed_only`` hides missing frameworks)."""
    _ensure_loaded()
    specs = sorted(_REGISTRY.values(), key=lambda s: s.name.lower())
    return [s for s in specs if s.installed] if installed_only else specs


def get_spec(name: str) -> DetectorSpec:
    """The registry entry called ``name``; the error lists close matches."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DetectorError(
            f"unknown detector {name!r}.{hint} `pynomaly_core.detectors.available()` lists all "
            f"{len(_REGISTRY)}."
        ) from None


def create(name: str, **params: Any) -> BaseDetector:
    """An unfitted detector called ``name`` with ``params`` over the registry defaults."""
    spec = get_spec(name)
    if not spec.installed:
        raise MissingExtraError(
            f"detector {name!r} needs {spec.framework} ({spec.requires_module}), which is not "
            f"installed: pip install 'pynomaly[{spec.extra}]'."
        )
    cls: type[BaseDetector] = import_target(spec.target)
    kwargs = {**spec.defaults, **params}
    if spec.wraps is not None:
        kwargs.setdefault("model", spec.wraps)
    accepted = inspect.signature(cls.__init__).parameters
    if "params" in accepted:
        # Adapters take the wrapped library's own arguments as one dict so that
        # get_params/clone stay plain; fold anything the adapter itself lacks into it.
        folded = {k: kwargs.pop(k) for k in list(kwargs) if k not in accepted}
        if folded:
            kwargs["params"] = {**(kwargs.get("params") or {}), **folded}
    try:
        detector = cls(**kwargs)
    except TypeError as exc:
        raise DetectorError(
            f"detector {name!r}: invalid parameters {sorted(params)} ({exc})."
        ) from exc
    return detector
