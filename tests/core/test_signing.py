"""The signing key: resolved in one place (pynomaly_core.signing), passed explicitly to persistence."""

from __future__ import annotations

import ast
import stat
from pathlib import Path

import numpy as np
import pytest

from pynomaly_core.detectors import (
    ModelIntegrityError,
    create,
    load_object,
    persistence,
    save_object,
)
from pynomaly_core.signing import (
    KEY_ENV,
    KEY_FILE_ENV,
    SigningKey,
    default_signing_key,
    key_sources,
    resolve_signing_key,
)

X = np.random.default_rng(0).normal(size=(60, 3))


def test_env_var_wins_over_the_key_file_and_a_configured_secret_over_both(
    tmp_path, signing_key_file, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert resolve_signing_key(tmp_path) == b"from-env"
    assert not (tmp_path / ".signing_key").exists()
    assert resolve_signing_key(tmp_path, secret="configured") == b"configured"


def test_key_file_is_created_once_private_and_reused(tmp_path, monkeypatch):
    key_file = tmp_path / "keys" / "signing_key"
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    first = resolve_signing_key(tmp_path / "home")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert not (tmp_path / "home").exists()  # nothing written into the home
    assert len(first) == 64 and resolve_signing_key(tmp_path / "home") == first


def test_resolved_key_names_its_sources_and_never_prints_the_secret(
    tmp_path, signing_key_file, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, "s3cret")
    key = resolve_signing_key(tmp_path)
    assert isinstance(key, SigningKey) and isinstance(key, bytes)
    assert (
        key.source == key_sources(tmp_path) == f"{KEY_ENV} or {signing_key_file} ({KEY_FILE_ENV})"
    )
    assert "s3cret" not in repr(key) and "s3cret" not in str(key)


def test_default_key_is_the_key_file_outside_pynomaly_home(isolated_home, signing_key_file):
    assert default_signing_key() == signing_key_file.read_text().strip().encode()
    assert not (isolated_home / ".signing_key").exists()


def test_persistence_verifies_with_the_key_it_is_given(tmp_path):
    detector = create("HBOS").fit(X)
    path = save_object(detector, tmp_path / "model", kind="detector", key=b"key-one")
    loaded = load_object(path, key=b"key-one")
    np.testing.assert_array_equal(loaded.decision_function(X), detector.decision_function(X))
    with pytest.raises(ModelIntegrityError, match="the key passed in by the caller"):
        load_object(path, key=b"key-two")
    with pytest.raises(ModelIntegrityError, match=r"PYNOMALY_SIGNING_KEY or .*signing_key"):
        load_object(path)  # None: the default key, which did not sign it


def test_composite_models_sign_their_parts_with_the_same_key(tmp_path):
    ensemble = create("Ensemble", detectors=["HBOS", "IForest"], random_state=0).fit(X)
    path = ensemble.save(tmp_path / "ensemble", key=b"shared")
    assert load_object(path / "member-0", key=b"shared") is not None
    loaded = type(ensemble).load(path, key=b"shared")
    np.testing.assert_array_equal(loaded.decision_function(X), ensemble.decision_function(X))
    with pytest.raises(ModelIntegrityError):
        type(ensemble).load(path)


def test_persistence_reads_no_settings_itself():
    tree = ast.parse(Path(persistence.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert (
        "pynomaly_core.paths" not in imported
        and "os.environ" not in Path(persistence.__file__).read_text()
    )
