"""Seeding the process-wide RNGs that third-party detectors and explainers draw from."""

from __future__ import annotations

import contextlib
import numbers
import random
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def seeded(random_state: Any) -> Iterator[None]:
    """Seed the global RNGs of ``random``, NumPy and torch (if imported) for a block.

    Many PyOD detectors draw from the global RNGs (torch weight initialisation,
    ``np.random.shuffle``, dropout, VAE sampling) whatever their own
    ``random_state``, and so do shap's sampling explainers. Inside the block those RNGs
    start from ``random_state``; their previous states are restored afterwards. Does
    nothing unless ``random_state`` is an integer.
    """
    if not isinstance(random_state, numbers.Integral) or isinstance(random_state, bool):
        yield
        return
    seed = int(random_state) % (2**32)
    py_state, np_state = random.getstate(), np.random.get_state()
    torch = sys.modules.get("torch")
    fork = torch.random.fork_rng() if torch is not None else contextlib.nullcontext()
    try:
        with fork:
            random.seed(seed)
            np.random.seed(seed)
            if torch is not None:
                torch.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
