"""Issue #13, bug 1: whoever can write model files must not be able to make a model run code.

The attack of the issue: write a pickle into a champion's preprocessor file, re-sign
``manifest.json`` with the key file found in ``$PYNOMALY_HOME``, update the pinned digest in the
champion value, load the champion as scoring does. Today the key lives outside the home (so the
forgery fails its signature) and the preprocessor is JSON + arrays (so even a stolen key does not
get a pickle unpickled).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from pynomaly_core.data.config import FeatureSpec
from pynomaly_core.data.demo import DemoSettings, generate_day
from pynomaly_core.detectors import ModelIntegrityError, create, load_object
from pynomaly_core.detectors.persistence import MANIFEST, _sign, sha256_file
from pynomaly_core.detectors.safe_io import UntrustedPayloadError
from pynomaly_core.lifecycle.record import ChampionRecord
from pynomaly_core.model import AnomalyModel
from pynomaly_core.signing import (
    KEY_ENV,
    KEY_FILE_ENV,
    SigningKeyLocationError,
    default_signing_key,
    resolve_signing_key,
)

FEATURES = [FeatureSpec(name=n) for n in ("rpm", "power_kw", "temperature_c")] + [
    FeatureSpec(name="machine_type", type="category")
]
SETTINGS = DemoSettings(machines=2, interval_minutes=30, anomaly_rate=0.02)


class Payload:
    """A pickle that runs a command when unpickled: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _day(day: int) -> pd.DataFrame:
    return generate_day(dt.date(2026, 11, day), SETTINGS)


@pytest.fixture
def champion(isolated_home):
    """A champion saved under ``$PYNOMALY_HOME/models`` with the default key, and its value."""
    train = pd.concat([_day(1), _day(2)], ignore_index=True)
    model = AnomalyModel(FEATURES, "IForest", contamination=0.02).fit(train)
    path = model.save(isolated_home / "models" / "demo" / "v1")
    record = ChampionRecord(
        feed="demo", version="v1", path=str(path), manifest_sha256=sha256_file(path / MANIFEST)
    )
    return model, path, record


def _forge(path: Path, files: dict[str, bytes], key: bytes) -> str:
    """Replace ``files`` in the model at ``path``, re-sign its manifest with ``key``; the new pin."""
    manifest = json.loads((path / MANIFEST).read_text())
    for name, data in files.items():
        (path / name).write_bytes(data)
        manifest["files"][name] = sha256_file(path / name)
    manifest["signature"] = _sign(manifest, key)
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return sha256_file(path / MANIFEST)


def _keys_an_attacker_finds(home: Path) -> list[bytes]:
    """Every file under the home that looks like a key, as an attacker would look for them."""
    return [p.read_bytes().strip() for p in home.rglob("*key*") if p.is_file()]


def test_the_issue_attack_fails_and_runs_no_code(champion, isolated_home, tmp_path):
    _, path, record = champion
    marker = tmp_path / "payload-ran"
    evil = pickle.dumps(Payload(marker))
    found = _keys_an_attacker_finds(isolated_home)
    assert found == []  # nothing in the home signs models any more
    for key in [*found, b""]:  # the attacker's best guesses
        pin = _forge(path, {"preprocessor.joblib": evil, "preprocessor.npz": evil}, key)
        forged = ChampionRecord(**{**record.__dict__, "manifest_sha256": pin})
        with pytest.raises(ModelIntegrityError, match="signature does not match"):
            forged.load(default_signing_key())
    assert not marker.exists()


def test_even_a_stolen_key_gets_no_pickle_unpickled(champion, tmp_path):
    _, path, record = champion
    marker = tmp_path / "payload-ran"
    evil = pickle.dumps(Payload(marker))
    arrays = (path / "preprocessor.npz").read_bytes()
    pin = _forge(path, {"preprocessor.npz": evil}, default_signing_key())
    forged = ChampionRecord(**{**record.__dict__, "manifest_sha256": pin})
    with pytest.raises(ValueError, match="pickled"):
        forged.load(default_signing_key())
    # a pickled preprocessor written beside the JSON + arrays one is never read
    pin = _forge(
        path, {"preprocessor.npz": arrays, "preprocessor.joblib": evil}, default_signing_key()
    )
    ChampionRecord(**{**record.__dict__, "manifest_sha256": pin}).load(default_signing_key())
    assert not marker.exists()


def test_a_detector_file_naming_a_callable_outside_the_allow_list_is_refused(tmp_path):
    import skops.io as sio

    X = np.random.default_rng(0).normal(size=(60, 3))
    path = create("IForest", random_state=0).fit(X).save(tmp_path / "det", key=b"k")
    assert (path / "model.skops").exists() and not list(path.rglob("*.joblib"))
    evil = tmp_path / "evil.skops"
    sio.dump({"run": os.system}, evil)
    _forge(path, {"model.skops": evil.read_bytes()}, b"k")
    with pytest.raises(UntrustedPayloadError, match="system"):
        load_object(path, key=b"k")


def test_our_model_directories_hold_no_pickles(champion):
    model, path, record = champion
    assert [p.name for p in path.rglob("*.joblib")] == []
    assert json.loads((path / MANIFEST).read_text())["pickled_files"] == []
    day = _day(3)
    pd.testing.assert_frame_equal(record.load(default_signing_key()).score(day), model.score(day))


def test_models_saved_before_format_2_still_load(champion):
    """A format-1 champion (pickled preprocessor, verified by its signature) keeps scoring."""
    model, path, record = champion
    for name in ("preprocessor.json", "preprocessor.npz"):
        (path / name).unlink()
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"] = {
        k: v for k, v in manifest["files"].items() if not k.startswith("preprocessor.")
    }
    (path / MANIFEST).write_text(json.dumps(manifest))
    joblib.dump(model.preprocessor_, path / "preprocessor.joblib")
    pin = _forge(
        path,
        {"preprocessor.joblib": (path / "preprocessor.joblib").read_bytes()},
        default_signing_key(),
    )
    legacy = ChampionRecord(**{**record.__dict__, "manifest_sha256": pin})
    day = _day(3)
    pd.testing.assert_frame_equal(legacy.load(default_signing_key()).score(day), model.score(day))


@pytest.mark.parametrize("inside", ["home", "store"])
def test_a_key_file_inside_the_home_or_model_store_is_refused(tmp_path, monkeypatch, inside):
    home, store = tmp_path / "home", tmp_path / "store"
    key_file = (home if inside == "home" else store) / "keys" / "signing_key"
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    with pytest.raises(SigningKeyLocationError, match=KEY_FILE_ENV) as error:
        resolve_signing_key(home, stores=[store])
    assert str(key_file) in str(error.value) and not key_file.exists()


def test_the_legacy_key_file_in_the_home_is_refused_with_how_to_move_it(tmp_path, monkeypatch):
    home, key_file = tmp_path / "home", tmp_path / "config" / "signing_key"
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    home.mkdir()
    (home / ".signing_key").write_text("legacy-secret")
    X = np.random.default_rng(0).normal(size=(60, 3))
    path = create("HBOS").fit(X).save(tmp_path / "det", key=b"legacy-secret")
    with pytest.raises(SigningKeyLocationError, match=r"mv .*\.signing_key .*signing_key") as error:
        resolve_signing_key(home)
    assert KEY_ENV in str(error.value) and "legacy-secret" not in str(error.value)
    # the migration the message gives: models the old key signed keep verifying
    key_file.parent.mkdir()
    (home / ".signing_key").rename(key_file)
    assert load_object(path, key=resolve_signing_key(home)) is not None
    monkeypatch.setenv(KEY_ENV, "from-secret-store")  # the env var makes the file irrelevant
    (home / ".signing_key").write_text("legacy-secret")
    assert resolve_signing_key(home) == b"from-secret-store"
