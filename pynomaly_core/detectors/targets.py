"""``"module:QualifiedName"`` targets: how the registry, the adapters and saved models name classes.

A registry entry names the class that implements it (``target``) and the library class it
wraps (``wraps``, the adapter's ``model``); a saved model's manifest names the class that
loads its payload (``loader``). All three are resolved by :func:`import_target`.
"""

from __future__ import annotations

import importlib
from typing import Any


def import_target(target: str) -> Any:
    """The object ``target`` names, e.g. ``"pyod.models.iforest:IForest"``.

    The module is imported (which may import a framework such as torch); nested names
    (``"module:Outer.Inner"``) are followed attribute by attribute. A malformed target, a
    module that fails to import or a missing name raises ``ValueError`` / ``ImportError``
    / ``AttributeError`` naming the whole target.
    """
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"target {target!r} is not of the form 'module:QualifiedName'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"target {target!r}: module {module_name!r} cannot be imported ({type(exc).__name__}: {exc})",
            name=module_name,
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise AttributeError(
                f"target {target!r}: {getattr(obj, '__name__', obj)!r} has no attribute {part!r}"
            ) from exc
    return obj
