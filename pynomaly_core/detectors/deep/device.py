"""Framework imports, device selection, CPU threads and seeding for the deep detectors.

Nothing here imports torch at module level: the framework is imported by
:func:`import_torch` inside the methods that need it, so importing
:mod:`pynomaly_core.detectors` stays fast and works without the extra installed.

Device strings accepted by every torch detector's ``device`` parameter:

* ``"auto"`` — CUDA if available, else Apple MPS, else CPU;
* ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` — that device, or a
  :class:`~pynomaly_core.detectors.base.DetectorError` naming what is missing.

The Keras detectors take ``"auto"``, ``"cpu"``, ``"gpu"``/``"gpu:N"`` (``"cuda"``
spellings are aliases), resolved by :func:`resolve_tf_device`.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

from pynomaly_core.detectors.base import DetectorError
from pynomaly_core.detectors.registry import MissingExtraError

T = TypeVar("T")
R = TypeVar("R")

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

#: Multiply-adds per operation below which torch's OpenMP intra-op threads are not
#: worth it (~1 ms of single-core work). Each parallel region ends in a barrier that
#: waits for the slowest thread; when other processes share the cores, that thread is
#: often descheduled for a whole time slice. Measured on a shared 2-core machine: a
#: 32-row training step of a 64-wide autoencoder ran 10-25x slower on 2 threads than
#: on 1, and a fit on 1555 features (32 x 1555 x 64 products) ~5x slower; on an idle
#: machine the second thread saves little at these sizes.
MIN_WORK_PER_THREAD = 1 << 26


def import_framework(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is not installed, and this detector needs it: pip install 'pynomaly[{extra}]'."
        ) from exc


def import_torch() -> ModuleType:
    """The ``torch`` module, or :class:`MissingExtraError` naming the ``torch`` extra."""
    return import_framework("torch", "torch")


def available_cpus() -> int:
    """Number of CPU cores this process may run on (affinity-aware, at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_n_jobs(n_jobs: Any, owner: str) -> None:
    """Validate an ``n_jobs`` parameter: ``None``, ``-1`` or a positive int."""
    if n_jobs is None or n_jobs == -1:
        return
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise DetectorError(
            f"{owner}: n_jobs must be None (automatic), -1 (all cores) or a positive int, "
            f"got {n_jobs!r}."
        )


def cpu_threads(n_jobs: int | None, work_per_op: float | None = None) -> int:
    """CPU threads to use.

    Parameters
    ----------
    n_jobs : int or None
        ``None`` chooses automatically; ``-1`` means all available cores; a positive
        int is used as given.
    work_per_op : float, optional
        Multiply-adds in a typical operation of the job. With ``n_jobs=None``, one
        thread is used per :data:`MIN_WORK_PER_THREAD` of work, up to all cores.

    Returns
    -------
    int
        Number of threads, at least 1.
    """
    cores = available_cpus()
    if n_jobs == -1:
        return cores
    if n_jobs is not None:
        return int(n_jobs)
    if work_per_op is None:
        return cores
    return int(min(cores, max(1, work_per_op // MIN_WORK_PER_THREAD)))


def map_on_cpu_threads(
    torch: ModuleType, function: Callable[[T], R], items: Iterable[T], n_threads: int
) -> list[R]:
    """``[function(item) for item in items]`` on ``n_threads`` Python threads.

    Each call runs single-threaded torch ops under :func:`torch.inference_mode`. Work
    split into independent items needs no synchronisation between threads, unlike
    torch's OpenMP intra-op parallelism, whose barriers stall whenever another process
    takes one of the cores (measured 10-25x slowdowns on a shared 2-core machine).
    The caller's ``torch.get_num_threads()`` is restored afterwards.
    """

    def call(item: T) -> R:
        with torch.inference_mode():  # thread-local: entered in every worker
            return function(item)

    items = list(items)
    with torch_threads(torch, 1):
        if n_threads <= 1 or len(items) <= 1:
            return [call(item) for item in items]
        with ThreadPoolExecutor(min(n_threads, len(items))) as pool:
            return list(pool.map(call, items))


@contextmanager
def torch_threads(torch: ModuleType, n_threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n_threads)``, restoring the caller's setting."""
    previous = torch.get_num_threads()
    if n_threads != previous:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        if n_threads != previous:
            torch.set_num_threads(previous)


def check_device(device: Any, owner: str) -> None:
    """Validate the spelling of a ``device`` parameter (availability is checked when resolving)."""
    if not isinstance(device, str) or not _DEVICE_PATTERN.match(device):
        raise DetectorError(
            f"{owner}: device must be one of {', '.join(map(repr, DEVICE_CHOICES))}, got {device!r}."
        )


def resolve_device(torch: ModuleType, device: str, owner: str = "detector") -> Any:
    """The ``torch.device`` for a ``device`` parameter.

    Parameters
    ----------
    torch : module
        The imported torch module.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU) or an explicit device, see the module docstring.
    owner : str
        Name used in error messages.

    Returns
    -------
    torch.device

    Raises
    ------
    DetectorError
        If the spelling is invalid or the requested device is not available here.
    """
    check_device(device, owner)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise DetectorError(
                f"{owner}: device='mps' was requested but Apple MPS is not available on this "
                "machine; use device='auto' or device='cpu'."
            )
        return torch.device("mps")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise DetectorError(
            f"{owner}: device={device!r} was requested but CUDA is not available (torch "
            f"{torch.__version__} is {build}, or no GPU is visible); use device='auto' or "
            "device='cpu'."
        )
    index = int(device.partition(":")[2] or torch.cuda.current_device())
    if index >= torch.cuda.device_count():
        raise DetectorError(
            f"{owner}: device={device!r} was requested but only {torch.cuda.device_count()} CUDA "
            f"device(s) are visible (cuda:0 to cuda:{torch.cuda.device_count() - 1})."
        )
    return torch.device("cuda", index)


def autocast_dtype(torch: ModuleType, device: Any) -> Any:
    """Mixed-precision dtype for ``device``: bf16 where supported, else fp16; ``None`` on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


@contextmanager
def seeded(torch: ModuleType, random_state: int | None, device: Any) -> Iterator[None]:
    """Seed torch's generators for the block and restore the caller's RNG state after.

    ``random_state=None`` leaves the generators alone (non-reproducible runs).
    """
    if random_state is None:
        yield
        return
    if device.type == "cuda":
        devices, device_type = [device.index or 0], "cuda"
    elif device.type == "mps":
        devices, device_type = [0], "mps"
    else:
        devices, device_type = [], "cpu"
    with torch.random.fork_rng(devices=devices, device_type=device_type):
        # Seed only the generators that were forked, so no other device's stream changes.
        torch.random.default_generator.manual_seed(random_state)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(random_state)
        elif device.type == "mps":
            torch.mps.manual_seed(random_state)
        yield


# ------------------------------------------------------------------ TensorFlow / Keras
KERAS_DEVICE_CHOICES = ("auto", "cpu", "gpu", "gpu:N", "cuda", "cuda:N")
_KERAS_DEVICE_PATTERN = re.compile(r"^(auto|cpu|(gpu|cuda)(:\d+)?)$")


def import_keras() -> tuple[ModuleType, ModuleType, ModuleType]:
    """``(tensorflow, keras, keras_networks)``, or :class:`MissingExtraError` naming ``tensorflow``."""
    tf = import_framework("tensorflow", "tensorflow")
    networks = importlib.import_module("pynomaly_core.detectors.deep.keras_networks")
    return tf, networks.keras, networks


def check_keras_device(device: Any, owner: str) -> None:
    """Validate the spelling of a Keras detector's ``device`` parameter."""
    if not isinstance(device, str) or not _KERAS_DEVICE_PATTERN.match(device):
        raise DetectorError(
            f"{owner}: device must be one of {', '.join(map(repr, KERAS_DEVICE_CHOICES))}, "
            f"got {device!r}."
        )


def resolve_tf_device(tf: ModuleType, device: str, owner: str = "detector") -> str:
    """TensorFlow device name (``"/CPU:0"``, ``"/GPU:N"``) for a ``device`` parameter.

    ``"auto"`` picks the first GPU TensorFlow sees, else the CPU; ``"cuda"`` is an
    alias of ``"gpu"``. An unavailable GPU raises :class:`DetectorError`.
    """
    check_keras_device(device, owner)
    gpus = tf.config.list_physical_devices("GPU")
    if device == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if device == "cpu":
        return "/CPU:0"
    index = int(device.partition(":")[2] or 0)
    if index >= len(gpus):
        raise DetectorError(
            f"{owner}: device={device!r} was requested but TensorFlow sees {len(gpus)} GPU(s); "
            "use device='auto' or device='cpu'."
        )
    return f"/GPU:{index}"


def keras_dtype_policy(tf: ModuleType, device_name: str, mixed_precision: bool) -> str:
    """Keras dtype policy: mixed bf16 on GPUs of compute capability >= 8, mixed fp16 on older ones."""
    if not mixed_precision or not device_name.startswith("/GPU"):
        return "float32"
    gpu = tf.config.list_physical_devices("GPU")[int(device_name.rpartition(":")[2])]
    capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
    return "mixed_bfloat16" if tuple(capability) >= (8, 0) else "mixed_float16"
