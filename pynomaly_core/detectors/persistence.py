"""Signed, checksummed persistence for detectors and fitted pipelines.

A saved model is a directory::

    manifest.json   # what it is, library versions, sha256 and HMAC of every payload file
    model.joblib    # or framework-native files (torch state_dict, Keras .keras) for deep detectors

Loading recomputes the sha256 of every payload file and verifies the HMAC of the
manifest with the signing key *before* anything is unpickled. A file changed by
anyone who does not hold the key is refused with an error naming the file. The key
comes from ``PYNOMALY_SIGNING_KEY`` or, failing that, a per-installation key file
(``$PYNOMALY_HOME/.signing_key``, created with mode 0600 on first use).

Deep detectors (torch, Keras) store weights in their framework's safe formats
(``torch.load(weights_only=True)`` / ``.keras``) plus a JSON config; they implement
``_save_payload(dirpath)`` / ``_load_payload(dirpath)`` and are never pickled.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pynomaly_core.paths import pynomaly_home

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ModelIntegrityError(RuntimeError):
    """A saved model failed its checksum or signature check; it is not loaded."""


def signing_key() -> bytes:
    """The HMAC key used to sign saved models."""
    env = os.environ.get("PYNOMALY_SIGNING_KEY")
    if env:
        return env.encode()
    key_file = pynomaly_home() / ".signing_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return key_file.read_text().strip().encode()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sign(manifest: dict[str, Any]) -> str:
    body = json.dumps({k: v for k, v in manifest.items() if k != "signature"}, sort_keys=True)
    return hmac.new(signing_key(), body.encode(), hashlib.sha256).hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("numpy", "sklearn", "pyod"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except ImportError:  # pragma: no cover - core dependencies
            pass
    return out


def save_object(obj: Any, path: str | Path, *, kind: str, info: dict[str, Any] | None = None) -> Path:
    """Save ``obj`` into directory ``path`` atomically and sign it.

    Objects with ``_save_payload`` write framework-native files; anything else is
    written with joblib. Returns the directory path.
    """
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        if hasattr(obj, "_save_payload"):
            obj._save_payload(tmp)
            loader = f"{type(obj).__module__}:{type(obj).__qualname__}"
        else:
            joblib.dump(obj, tmp / "model.joblib")
            loader = "joblib"
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "class": f"{type(obj).__module__}:{type(obj).__qualname__}",
            "loader": loader,
            "files": files,
            "versions": _versions(),
            "info": info or {},
        }
        manifest["signature"] = _sign(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and verify the manifest of a saved model (signature and file checksums)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise ModelIntegrityError(f"{manifest_path} does not exist: {path} is not a saved Pynomaly model.")
    manifest = json.loads(manifest_path.read_text())
    expected = _sign(manifest)
    if not hmac.compare_digest(expected, str(manifest.get("signature", ""))):
        raise ModelIntegrityError(
            f"{manifest_path}: signature does not match the signing key (PYNOMALY_SIGNING_KEY or "
            f"{pynomaly_home() / '.signing_key'}); refusing to load a model that may have been tampered with."
        )
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.exists():
            raise ModelIntegrityError(f"{file} is listed in {manifest_path} but missing.")
        if sha256_file(file) != digest:
            raise ModelIntegrityError(
                f"{file}: sha256 does not match {manifest_path}; refusing to load a modified model file."
            )
    return manifest


def load_object(path: str | Path, *, expected_sha256: str | None = None) -> Any:
    """Load an object saved with :func:`save_object` after verifying it.

    ``expected_sha256`` optionally pins the manifest digest recorded elsewhere
    (the Dagster asset value), so a re-signed replacement is refused too.
    """
    import joblib

    path = Path(path)
    if expected_sha256 is not None and sha256_file(path / MANIFEST) != expected_sha256:
        raise ModelIntegrityError(
            f"{path / MANIFEST}: sha256 differs from the one recorded when the model was trained."
        )
    manifest = read_manifest(path)
    if manifest["loader"] == "joblib":
        return joblib.load(path / "model.joblib")
    module, _, qualname = manifest["loader"].partition(":")
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return cls._load_payload(path)


def save_detector(detector: Any, path: str | Path) -> Path:
    """Save a fitted detector (see :func:`save_object`)."""
    return save_object(detector, path, kind="detector", info={"name": type(detector).__name__})


def load_detector(path: str | Path) -> Any:
    """Load a detector saved with :func:`save_detector`."""
    return load_object(path)
