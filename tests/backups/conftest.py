import hashlib

import boto3
import psycopg
import pytest
from moto.server import ThreadedMotoServer

from backups.models import DatabaseTarget, StorageLocation


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto in server mode, over HTTP: a real S3 endpoint for boto3."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint):
    import uuid

    name = f"backups-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    client.create_bucket(Bucket=name)
    return client, name


@pytest.fixture
def s3_storage(db, bucket, s3_endpoint):
    _, name = bucket
    location = StorageLocation(
        name="s3", kind="s3", secret="test",
        config={"bucket": name, "prefix": "prod", "endpoint_url": s3_endpoint, "access_key_id": "test"},
    )  # fmt: skip
    location.full_clean()
    location.save()
    return location


@pytest.fixture
def local_storage(db, tmp_path):
    location = StorageLocation(
        name="local test", kind="local", config={"path": str(tmp_path / "store")}
    )
    location.full_clean()
    location.save()
    return location


SCHEMA = """
CREATE TABLE users (id bigserial primary key, email text not null, tier text);
CREATE TABLE videos (id bigserial primary key, title text, tags jsonb, views bigint);
CREATE TABLE search_logs (id bigserial primary key, query text, at timestamptz default now());
CREATE TABLE logs (id bigserial primary key, line text);
INSERT INTO users (email, tier) SELECT 'u' || g || '@example.com', (ARRAY['free','pro'])[1 + g % 2] FROM generate_series(1, 500) g;
INSERT INTO videos (title, tags, views) SELECT md5(g::text), jsonb_build_array(g, 'shorts'), g * 7 FROM generate_series(1, 2000) g;
INSERT INTO search_logs (query) SELECT 'q' || g FROM generate_series(1, 300) g;
INSERT INTO logs (line) SELECT 'noise ' || g FROM generate_series(1, 1000) g;
"""

TABLES = ("users", "videos", "search_logs", "logs")


def table_fingerprints(dsn: str) -> dict[str, tuple[int, str]]:
    """Row count and a checksum of every table's full contents."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            rows = conn.execute(f"SELECT t::text FROM {table} t ORDER BY id").fetchall()  # noqa: S608
            digest = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()
            out[table] = (len(rows), digest)
    return out


@pytest.fixture
def source_db(pg):
    name = pg.create_database("shorts")
    with psycopg.connect(pg.dsn(name), autocommit=True) as conn:
        conn.execute(SCHEMA)
    return pg.dsn(name)


@pytest.fixture
def target(db, source_db):
    row = DatabaseTarget(name="shorts", engine="postgresql", dsn=source_db,
                         required_tables=["users", "videos", "search_logs"],
                         check_queries=["SELECT count(*) > 0 FROM users"])  # fmt: skip
    row.full_clean()
    row.save()
    return row
