"""A real S3-compatible server for tests: moto's server mode on a free local port.

Clients reach it through the standard environment variables (``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``, ...), exactly as a deployment points them at MinIO or AWS. The fixture is registered for every test by ``pytest_plugins`` in tests/conftest.py::

    def test_x(s3_server, monkeypatch):
        s3_server.env(monkeypatch)
        s3_server.put("landing", "feeds/2026-11-01.csv", b"...")
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass
class S3Server:
    endpoint: str

    def env(self, monkeypatch: pytest.MonkeyPatch, *, key: str = "testing") -> None:
        """Point every AWS client of this process at the server, with access key ``key``."""
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", self.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probes
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
            region_name="us-east-1",
        )

    def bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=body)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    moto_server = pytest.importorskip(
        "moto.server", reason="pip install 'moto[server]' (dev extra)"
    )
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
