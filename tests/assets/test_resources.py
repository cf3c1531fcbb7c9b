"""Resources of the code location: the model store's signing key."""

from __future__ import annotations

import dagster as dg
import pytest

from pynomaly_assets.resources import ModelStoreResource, default_resources
from pynomaly_core.signing import KEY_ENV, KEY_FILE_ENV


def test_model_store_key_is_the_configured_secret_else_the_installation_key(
    isolated_home, signing_key_file, monkeypatch
):
    store = ModelStoreResource(base_dir=str(isolated_home / "models"), signing_secret="configured")
    assert store.signing_key() == b"configured"
    default = ModelStoreResource(base_dir=str(isolated_home / "models"))
    assert default.signing_key() == signing_key_file.read_text().strip().encode()
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert default.signing_key() == b"from-env"
    assert default.signing_key().source == f"{KEY_ENV} or {signing_key_file} ({KEY_FILE_ENV})"


def test_default_resources_read_the_key_from_the_env_var_at_run_time(monkeypatch):
    assert default_resources()["model_store"].signing_secret is None
    monkeypatch.setenv(KEY_ENV, "deployment-key")
    store = default_resources()["model_store"]
    assert isinstance(store.signing_secret, dg.EnvVar) and store.signing_secret == KEY_ENV

    @dg.asset
    def key_length(model_store: ModelStoreResource) -> int:
        return len(model_store.signing_key())

    result = dg.materialize([key_length], resources={"model_store": store})
    assert result.output_for_node("key_length") == len("deployment-key")


def test_the_code_location_refuses_to_start_with_the_key_inside_its_home(
    isolated_home, monkeypatch
):
    from pynomaly_core.signing import SigningKeyLocationError

    (isolated_home / ".signing_key").write_text("legacy")  # where earlier versions kept it
    with pytest.raises(SigningKeyLocationError, match=r"\.signing_key.*mv "):
        default_resources()
    (isolated_home / ".signing_key").unlink()
    monkeypatch.setenv(KEY_FILE_ENV, str(isolated_home / "models" / "key"))
    with pytest.raises(SigningKeyLocationError, match=KEY_FILE_ENV):
        default_resources()
