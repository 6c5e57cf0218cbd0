# The backup tests' real peers: moto's S3 server, a bucket, a storage location on it.
from tests.backups.conftest import bucket, s3_endpoint, s3_storage  # noqa: F401
