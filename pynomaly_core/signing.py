"""The HMAC key that signs saved models, resolved in this one place.

The key is ``PYNOMALY_SIGNING_KEY`` when that is set (a deployment shares it between the
processes that train and those that score), else a per-installation key file,
``<home>/.signing_key``, created with mode 0600 on first use. Persistence
(:mod:`pynomaly_core.detectors.persistence`) never looks either up itself: it is given
the key, and only resolves the default here when a caller passes none.

A resolved key is a :class:`SigningKey`: plain ``bytes`` that also say where they came
from, so a signature that does not verify is reported with the setting and file to check.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Self

KEY_ENV = "PYNOMALY_SIGNING_KEY"
KEY_FILE = ".signing_key"


class SigningKey(bytes):
    """Key bytes plus ``source``: the setting and key file they were resolved from.

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


def key_sources(home: Path) -> str:
    """Where a key is looked up, as error messages name it: the env var, then the key file."""
    return f"{KEY_ENV} or {Path(home) / KEY_FILE}"


def resolve_signing_key(home: Path, secret: str | None = None) -> SigningKey:
    """The signing key: ``secret``, else ``$PYNOMALY_SIGNING_KEY``, else ``<home>/.signing_key``.

    ``secret`` is a key configured explicitly (e.g. the model store resource's setting, itself
    read from ``PYNOMALY_SIGNING_KEY``). The key file is created (mode 0600, 32 random bytes
    as hex) the first time it is needed, so one installation signs and verifies with one key.
    """
    source = key_sources(home)
    value = secret or os.environ.get(KEY_ENV)
    if value:
        return SigningKey(value.encode(), source)
    key_file = Path(home) / KEY_FILE
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return SigningKey(key_file.read_text().strip().encode(), source)


def default_signing_key() -> SigningKey:
    """:func:`resolve_signing_key` for this process's ``$PYNOMALY_HOME``, resolved now."""
    from pynomaly_core.paths import pynomaly_home

    return resolve_signing_key(pynomaly_home())
