"""Feed YAML files are validated with errors that name the file and the key."""

import os
from pathlib import Path

import pytest
import yaml

from pynomaly_core.data.config import FeedConfigError, load_feed, load_feeds

MINIMAL = {
    "name": "payments",
    "source": {"kind": "csv", "path": "landing/{date}.csv"},
    "event_time": "paid_at",
    "record_key": "payment_id",
    "features": [{"name": "amount", "type": "float", "min": 0}],
    "partitioning": {"start_date": "2026-01-01"},
}


def write(tmp_path: Path, data: dict, name: str = "payments.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_minimal_feed_loads_with_defaults(tmp_path):
    feed = load_feed(write(tmp_path, MINIMAL))
    assert feed.detector.name == "IForest"
    assert feed.training.window_days == 14
    assert feed.expected_columns == ["payment_id", "paid_at", "amount"]
    assert feed.resolve_path("landing/x.csv") == str(tmp_path.resolve() / "landing/x.csv")


def test_error_names_file_and_key_for_unknown_key(tmp_path):
    path = write(tmp_path, {**MINIMAL, "detecter": {"name": "KNN"}})
    with pytest.raises(FeedConfigError) as err:
        load_feed(path)
    assert str(path) in str(err.value)
    assert "detecter" in str(err.value)


def test_file_source_must_be_partitioned_by_date(tmp_path):
    path = write(tmp_path, {**MINIMAL, "source": {"kind": "csv", "path": "landing/all.csv"}})
    with pytest.raises(FeedConfigError, match=r"source\.path.*\{date\}"):
        load_feed(path)


def test_sql_source_must_bind_the_partition_window(tmp_path):
    path = write(tmp_path, {**MINIMAL, "source": {"kind": "sql", "query": "SELECT * FROM t"}})
    with pytest.raises(FeedConfigError, match=r"source\.query.*:partition_start"):
        load_feed(path)


def test_min_greater_than_max_is_rejected_naming_the_feature(tmp_path):
    bad = {**MINIMAL, "features": [{"name": "amount", "min": 5, "max": 1}]}
    with pytest.raises(FeedConfigError, match="amount"):
        load_feed(write(tmp_path, bad))


def test_contamination_out_of_range_names_the_setting(tmp_path):
    bad = {**MINIMAL, "detector": {"contamination": 0.9}}
    with pytest.raises(FeedConfigError, match=r"detector\.contamination"):
        load_feed(write(tmp_path, bad))


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(FeedConfigError, match="broken.yaml"):
        load_feed(path)


def test_two_files_with_the_same_feed_name_are_rejected(tmp_path):
    write(tmp_path, MINIMAL, "a.yaml")
    write(tmp_path, MINIMAL, "b.yaml")
    with pytest.raises(FeedConfigError, match="already used"):
        load_feeds(tmp_path)


def test_missing_feeds_directory_names_the_env_var(tmp_path):
    with pytest.raises(FeedConfigError, match="PYNOMALY_FEEDS_DIR"):
        load_feeds(tmp_path / "nope")


def test_shipped_demo_feed_is_valid():
    feeds = load_feeds(Path(__file__).resolve().parents[3] / "pynomaly_assets" / "feeds")
    # the synthetic demo and the real NAB series (pynomaly_assets/feeds/nab_ec2_cpu/SOURCE.md)
    assert {f.name: f.source.kind for f in feeds} == {
        "demo_telemetry": "demo",
        "nab_ec2_cpu": "csv",
    }


def test_monitoring_defaults_match_the_documented_schedule(tmp_path):
    feed = load_feed(write(tmp_path, MINIMAL))
    assert feed.schedules.maintenance_cron == "0 3 * * 1"
    assert feed.schedules.daily_cron == "0 1 * * *"
    assert feed.monitoring.retrain_on == "error" and feed.monitoring.sensor_running is True


@pytest.mark.parametrize(
    ("section", "value", "key"),
    [
        ("schedules", {"maintenance_cron": "every monday"}, "schedules.maintenance_cron"),
        ("monitoring", {"drift_share_warn": 0.6, "drift_share_error": 0.5}, "monitoring"),
        ("monitoring", {"ap_tolerance_warn": 0.3, "ap_tolerance_error": 0.2}, "monitoring"),
        ("monitoring", {"retrain_on": "sometimes"}, "monitoring.retrain_on"),
        ("retention", {"anomaly_days": 0}, "retention.anomaly_days"),
    ],
)
def test_bad_monitoring_settings_name_the_key(tmp_path, section, value, key):
    path = write(tmp_path, {**MINIMAL, section: value})
    with pytest.raises(FeedConfigError) as err:
        load_feed(path)
    assert str(path) in str(err.value) and key in str(err.value)


@pytest.mark.parametrize("path", ["/x/${PYNOMALY_SIGNING_KEY}/{date}.csv", "in/$HOME/{date}.csv"])
def test_environment_variables_in_source_paths_are_refused_not_expanded(
    tmp_path, monkeypatch, path
):
    monkeypatch.setenv("PYNOMALY_SIGNING_KEY", "s3cret-signing-key")
    with pytest.raises(FeedConfigError) as err:
        load_feed(write(tmp_path, {**MINIMAL, "source": {"kind": "csv", "path": path}}))
    message = str(err.value)
    assert "source.path" in message and "not expanded" in message
    assert "s3cret-signing-key" not in message


def test_resolve_path_keeps_a_dollar_sign_literal(tmp_path):
    feed = load_feed(write(tmp_path, MINIMAL))
    assert feed.resolve_path("in/$1/{date}.csv") == str(tmp_path.resolve() / "in/$1/{date}.csv")


@pytest.mark.parametrize("name", ["payments\n", "pay\nments", "payments "])
def test_a_feed_name_with_a_newline_or_space_is_refused(tmp_path, name):
    with pytest.raises(FeedConfigError, match="name"):
        load_feed(write(tmp_path, {**MINIMAL, "name": name}))


def test_event_time_zone_must_be_an_iana_name(tmp_path):
    assert (
        load_feed(write(tmp_path, {**MINIMAL, "event_time_zone": "Europe/Berlin"})).event_time_zone
        == "Europe/Berlin"
    )
    with pytest.raises(FeedConfigError, match="event_time_zone.*IANA"):
        load_feed(write(tmp_path, {**MINIMAL, "event_time_zone": "EST5EDTX"}))


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passw[d{date}]",
        "/etc/{date}/*.csv",
        "../outside/{date}.csv",
        "landing/../../outside/{date}.csv",
    ],
)
def test_a_source_path_outside_the_feed_directory_and_data_roots_is_refused(
    tmp_path, monkeypatch, path
):
    monkeypatch.delenv("PYNOMALY_DATA_ROOTS", raising=False)
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    with pytest.raises(FeedConfigError) as err:
        load_feed(
            write(feeds, {**MINIMAL, "source": {"kind": "csv", "path": path, "delimiter": ":"}})
        )
    assert "outside the feed file's directory" in str(err.value) and "PYNOMALY_DATA_ROOTS" in str(
        err.value
    )


def test_an_absolute_path_under_a_configured_data_root_is_allowed(tmp_path, monkeypatch):
    root = tmp_path / "landing"
    root.mkdir()
    monkeypatch.setenv("PYNOMALY_DATA_ROOTS", f"/nonexistent-root{os.pathsep}{root}")
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    feed = load_feed(
        write(feeds, {**MINIMAL, "source": {"kind": "csv", "path": f"{root}/{{date}}.csv"}})
    )
    assert feed.source.path == f"{root}/{{date}}.csv"


def test_a_url_source_path_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.delenv("PYNOMALY_REMOTE_SOURCES", raising=False)
    with pytest.raises(FeedConfigError, match="is a URL; remote sources are read only under"):
        load_feed(
            write(
                tmp_path, {**MINIMAL, "source": {"kind": "csv", "path": "s3://bucket/{date}.csv"}}
            )
        )


def test_a_symlink_out_of_the_data_roots_is_not_read(tmp_path, monkeypatch):
    import datetime as dt

    from pynomaly_core.data.sources import SourceReadError, read_partition

    monkeypatch.delenv("PYNOMALY_DATA_ROOTS", raising=False)
    outside = tmp_path / "secret.csv"
    outside.write_text("payment_id,paid_at,amount\nx,2026-01-02T00:00:00Z,1\n")
    feeds = tmp_path / "feeds"
    (feeds / "landing").mkdir(parents=True)
    (feeds / "landing" / "2026-01-02.csv").symlink_to(outside)
    feed = load_feed(write(feeds, MINIMAL))
    with pytest.raises(SourceReadError, match="resolves outside the allowed directories"):
        read_partition(feed, dt.date(2026, 1, 2))
