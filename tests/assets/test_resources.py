"""Resources of the code location: the model store's signing key."""

from __future__ import annotations

import dagster as dg

from pynomaly_assets.resources import ModelStoreResource, default_resources
from pynomaly_core.signing import KEY_ENV


def test_model_store_key_is_the_configured_secret_else_the_installation_key(
    isolated_home, monkeypatch
):
    store = ModelStoreResource(base_dir=str(isolated_home / "models"), signing_secret="configured")
    assert store.signing_key() == b"configured"
    default = ModelStoreResource(base_dir=str(isolated_home / "models"))
    assert default.signing_key() == (isolated_home / ".signing_key").read_text().strip().encode()
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert default.signing_key() == b"from-env"
    assert default.signing_key().source == f"{KEY_ENV} or {isolated_home / '.signing_key'}"


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
