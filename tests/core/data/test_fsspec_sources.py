"""File sources read through fsspec from a real S3-compatible server (moto's server mode).

Credentials and the endpoint come from the environment; the deployment allows remote prefixes
with ``PYNOMALY_REMOTE_SOURCES``; a missing bucket or refused credentials is a clear error,
never an empty day.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid

import pandas as pd
import pytest
import yaml

from pynomaly_core.data.config import FeedConfigError, load_feed
from pynomaly_core.data.sources import SourceReadError, partition_files, read_partition

DAY = dt.date(2026, 11, 2)
CSV = b"payment_id,paid_at,amount\np1,2026-11-02T01:00:00Z,12.5\np2,2026-11-02T02:00:00Z,7\n"


def _feed(tmp_path, path: str, kind: str = "csv"):
    data = {
        "name": "payments",
        "source": {"kind": kind, "path": path},
        "event_time": "paid_at",
        "record_key": "payment_id",
        "features": [{"name": "amount", "type": "float"}],
        "partitioning": {"start_date": "2026-11-01"},
    }
    file = tmp_path / "payments.yaml"
    file.write_text(yaml.safe_dump(data))
    return load_feed(file)


@pytest.fixture
def bucket(s3_server, monkeypatch) -> str:
    s3_server.env(monkeypatch)
    name = f"landing-{uuid.uuid4().hex[:12]}"
    s3_server.bucket(name)
    monkeypatch.setenv("PYNOMALY_REMOTE_SOURCES", f"s3://{name}/feeds/")
    return name


def test_an_s3_csv_partition_is_read_with_credentials_from_the_environment(
    tmp_path, s3_server, bucket
):
    s3_server.put(bucket, "feeds/payments/2026-11-02/part-0.csv", CSV)
    s3_server.put(bucket, "feeds/payments/2026-11-03/part-0.csv", CSV.replace(b"p1", b"x1"))
    feed = _feed(tmp_path, f"s3://{bucket}/feeds/payments/{{date}}/*.csv")

    part = read_partition(feed, DAY)

    assert part.files == [f"s3://{bucket}/feeds/payments/2026-11-02/part-0.csv"]
    assert part.frame["payment_id"].tolist() == ["p1", "p2"]
    assert part.frame["amount"].tolist() == ["12.5", "7"]  # CSV values stay text for validation


def test_an_s3_parquet_partition_keeps_its_types(tmp_path, s3_server, bucket):
    frame = pd.DataFrame(
        {"payment_id": ["p1"], "paid_at": ["2026-11-02T01:00:00Z"], "amount": [3.5]}
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    s3_server.put(bucket, "feeds/2026-11-02.parquet", buffer.getvalue())
    feed = _feed(tmp_path, f"s3://{bucket}/feeds/{{date}}.parquet", kind="parquet")

    part = read_partition(feed, DAY)

    assert part.frame["amount"].tolist() == [3.5]


def test_an_s3_day_without_files_is_an_empty_partition(tmp_path, bucket):
    feed = _feed(tmp_path, f"s3://{bucket}/feeds/{{date}}/*.csv")
    part = read_partition(feed, DAY)
    assert part.files == [] and part.frame.empty and "(no files)" in part.source


def test_a_missing_bucket_is_an_error_naming_it_not_an_empty_day(tmp_path, s3_server, monkeypatch):
    s3_server.env(monkeypatch)
    monkeypatch.setenv("PYNOMALY_REMOTE_SOURCES", "s3://no-such-bucket/")
    feed = _feed(tmp_path, "s3://no-such-bucket/feeds/{date}/*.csv")
    with pytest.raises(
        SourceReadError, match="bucket or container 'no-such-bucket' does not exist"
    ):
        read_partition(feed, DAY)


def test_refused_credentials_are_an_error_naming_where_credentials_come_from(
    tmp_path, s3_server, bucket, monkeypatch
):
    from moto.core.authorization import enable_iam_authentication

    s3_server.put(bucket, "feeds/2026-11-02.csv", CSV)
    feed = _feed(tmp_path, f"s3://{bucket}/feeds/{{date}}.csv")
    s3_server.env(monkeypatch, key="AKIAUNKNOWNKEY000000")
    with enable_iam_authentication(), pytest.raises(SourceReadError) as err:
        read_partition(feed, DAY)
    message = str(err.value)
    assert "access denied" in message and "AWS_ACCESS_KEY_ID" in message, message
    assert "testing-secret" not in message


def test_a_url_outside_the_allowed_prefixes_is_refused(tmp_path, bucket, monkeypatch):
    with pytest.raises(FeedConfigError, match="PYNOMALY_REMOTE_SOURCES"):
        _feed(tmp_path, f"s3://{bucket}/elsewhere/{{date}}.csv")
    # a prefix is a directory: s3://<bucket>/feeds/ does not allow s3://<bucket>/feeds-private/
    with pytest.raises(FeedConfigError, match="PYNOMALY_REMOTE_SOURCES"):
        _feed(tmp_path, f"s3://{bucket}/feeds-private/{{date}}.csv")
    monkeypatch.delenv("PYNOMALY_REMOTE_SOURCES")
    with pytest.raises(FeedConfigError, match="and it is unset"):
        _feed(tmp_path, f"s3://{bucket}/feeds/{{date}}.csv")


@pytest.mark.parametrize(
    "url, message",
    [
        ("s3://AKIA:secret@landing/feeds/{date}.csv", "credentials and '..' segments"),
        ("s3://landing/feeds/../private/{date}.csv", "credentials and '..' segments"),
        ("ftp://landing/feeds/{date}.csv", "protocol 'ftp'"),
        ("abfs://u:secret@acct.dfs.core.windows.net/f/{date}.csv", "credentials and '..'"),
    ],
)
def test_urls_with_credentials_dot_dot_or_other_protocols_are_refused(
    tmp_path, monkeypatch, url, message
):
    monkeypatch.setenv(
        "PYNOMALY_REMOTE_SOURCES",
        "s3://landing/ ftp://landing/ abfs://u:secret@acct.dfs.core.windows.net/",
    )
    with pytest.raises(FeedConfigError, match=message):
        _feed(tmp_path, url)


def test_a_rewritten_file_gets_a_new_version(tmp_path, s3_server, bucket):
    s3_server.put(bucket, "feeds/2026-11-02.csv", CSV)
    feed = _feed(tmp_path, f"s3://{bucket}/feeds/{{date}}.csv")
    first = partition_files(feed, DAY)
    assert partition_files(feed, DAY) == first  # unchanged: same version
    s3_server.put(bucket, "feeds/2026-11-02.csv", CSV + b"p3,2026-11-02T03:00:00Z,1\n")
    second = partition_files(feed, DAY)
    assert [f.path for f in second] == [f.path for f in first]
    assert second[0].version != first[0].version


def test_an_azure_container_at_account_url_is_not_taken_for_credentials(tmp_path, monkeypatch):
    prefix = "abfs://landing@acct.dfs.core.windows.net/feeds/"
    monkeypatch.setenv("PYNOMALY_REMOTE_SOURCES", prefix)
    feed = _feed(tmp_path, prefix + "{date}.csv")
    assert feed.resolve_path(feed.source.path) == prefix + "{date}.csv"
