# The backup tests' real peers: moto's S3 server and a bucket on it, a PostgreSQL database
# to back up, local storage.
from tests.backups.conftest import (  # noqa: F401
    bucket,
    local_storage,
    s3_endpoint,
    s3_storage,
    source_db,
    target,
)
