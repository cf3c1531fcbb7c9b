"""The HMAC key that signs saved models, resolved in this one place.

Whoever can write model files must not be able to sign them, so the key never lives in the model
store. It is, in this order:

1. a secret configured explicitly (the model store resource's setting);
2. ``PYNOMALY_SIGNING_KEY`` (a deployment shares it between the processes that train and score);
3. a key file outside ``$PYNOMALY_HOME``: ``PYNOMALY_SIGNING_KEY_FILE`` when set, else
   ``$XDG_CONFIG_HOME/pynomaly/signing_key`` (``~/.config/pynomaly/signing_key``), created with
   mode 0600 on first use.

A key file inside ``$PYNOMALY_HOME`` or a model store is refused (:class:`SigningKeyLocationError`,
naming the file and the setting), and so is the key file earlier versions created,
``$PYNOMALY_HOME/.signing_key``, while no ``PYNOMALY_SIGNING_KEY`` is set: the error says how to
move it out (models it signed keep verifying). :func:`check_key_location` runs those checks
without creating anything; the code location calls it when it starts.

Persistence (:mod:`pynomaly_core.detectors.persistence`) never looks the key up itself: it is
given the key, and only resolves the default here when a caller passes none. A resolved key is a
:class:`SigningKey`: plain ``bytes`` that also say where they came from, so a signature that does
not verify is reported with the settings and file to check.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Self

KEY_ENV = "PYNOMALY_SIGNING_KEY"
KEY_FILE_ENV = "PYNOMALY_SIGNING_KEY_FILE"
#: the key file earlier versions kept inside ``$PYNOMALY_HOME`` (refused now)
LEGACY_KEY_FILE = ".signing_key"


class SigningKeyLocationError(RuntimeError):
    """The signing key file is where whoever writes models could read it; nothing is signed."""


class SigningKey(bytes):
    """Key bytes plus ``source``: the settings and key file they were resolved from.

    A ``bytes`` subclass so every caller and :mod:`hmac` takes it as the key it is; the
    ``source`` only feeds error messages.
    """

    source: str

    def __new__(cls, secret: bytes, source: str) -> Self:
        key = super().__new__(cls, secret)
        key.source = source
        return key

    def __repr__(self) -> str:  # never print the secret in logs or tracebacks
        return f"SigningKey(source={self.source!r})"

    __str__ = __repr__


def default_key_file() -> Path:
    """The key file when none is configured: ``$XDG_CONFIG_HOME/pynomaly/signing_key``."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "pynomaly" / "signing_key"


def key_file_path() -> Path:
    """The key file in use: ``$PYNOMALY_SIGNING_KEY_FILE``, else :func:`default_key_file`."""
    configured = os.environ.get(KEY_FILE_ENV)
    return Path(configured).expanduser() if configured else default_key_file()


def key_sources(home: Path | None = None) -> str:
    """Where a key is looked up, as error messages name it: the env var, then the key file."""
    return f"{KEY_ENV} or {key_file_path()} ({KEY_FILE_ENV})"


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(Path(directory).resolve())


def check_key_location(home: Path, stores: Iterable[str | Path] = ()) -> None:
    """Refuse a key that whoever writes models could read; create nothing.

    With ``PYNOMALY_SIGNING_KEY`` set the key file is not used and only the settings are checked.
    Otherwise the key file must lie outside ``home`` and every directory in ``stores``, and the
    legacy ``<home>/.signing_key`` must be gone (it was readable to anyone who could write
    models). Raises :class:`SigningKeyLocationError` naming the file and the setting.
    """
    if os.environ.get(KEY_ENV):
        return
    legacy = Path(home) / LEGACY_KEY_FILE
    target = key_file_path()
    if legacy.exists():
        raise SigningKeyLocationError(
            f"{legacy}: the model signing key lives inside PYNOMALY_HOME ({home}), where whoever "
            "can write model files can read it and sign forged models. Move it out, e.g. "
            f"`mkdir -p {target.parent} && mv {legacy} {target}` (the default {KEY_FILE_ENV} "
            f"location; set {KEY_FILE_ENV} to use another file outside {home}), or set {KEY_ENV} "
            "from your secret store and delete the file. Models it signed keep verifying."
        )
    for directory in (Path(home), *(Path(s) for s in stores)):
        if _inside(target, directory):
            raise SigningKeyLocationError(
                f"{target}: the model signing key file ({KEY_FILE_ENV}) lies inside {directory}, "
                "the model store/PYNOMALY_HOME, where whoever can write model files can read it. "
                f"Point {KEY_FILE_ENV} at a file outside {directory} or set {KEY_ENV}."
            )


def _create_key_file(key_file: Path) -> None:
    """Write a new random key to ``key_file`` (0600), complete or not at all.

    Written to a private temporary file, then hard-linked into place: a process that starts at
    the same time either links first or finds the other's whole key (the link fails).
    """
    key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-key-", dir=key_file.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, key_file)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def resolve_signing_key(
    home: Path, secret: str | None = None, *, stores: Iterable[str | Path] = ()
) -> SigningKey:
    """The signing key: ``secret``, else ``$PYNOMALY_SIGNING_KEY``, else the key file.

    ``secret`` is a key configured explicitly (e.g. the model store resource's setting, itself
    read from ``PYNOMALY_SIGNING_KEY``). The key file (:func:`key_file_path`) must pass
    :func:`check_key_location` for ``home`` and ``stores``; it is created (mode 0600 in a 0700
    directory, 32 random bytes as hex) the first time it is needed, so one installation signs
    and verifies with one key.
    """
    source = key_sources(home)
    value = secret or os.environ.get(KEY_ENV)
    if value:
        return SigningKey(value.encode(), source)
    check_key_location(home, stores)
    key_file = key_file_path()
    if not key_file.exists():
        _create_key_file(key_file)
    secret_bytes = key_file.read_text().strip().encode()
    if not secret_bytes:
        raise SigningKeyLocationError(f"{key_file}: the signing key file ({KEY_FILE_ENV}) is empty")
    return SigningKey(secret_bytes, source)


def default_signing_key() -> SigningKey:
    """:func:`resolve_signing_key` for this process's ``$PYNOMALY_HOME``, resolved now."""
    from pynomaly_core.paths import pynomaly_home

    return resolve_signing_key(pynomaly_home())
