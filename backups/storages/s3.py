"""Amazon S3 or a compatible service (MinIO, R2) through boto3.

How a backup is written to S3: a multipart upload fed in 16 MiB parts as the
encrypted stream arrives (never the whole object in memory or on disk),
completed on commit and aborted on failure; the checksum is then added to
the object's metadata by a server-side copy (a tag above CopyObject's 5 GiB).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from backups.errors import StorageError
from backups.storages.base import Storage, Writer
from opsconsole import outbound

# S3 parts: 16 MiB keeps memory bounded and allows 160 GiB objects in 10,000 parts.
PART_SIZE = 16 * 1024 * 1024
# CopyObject copies at most 5 GiB; above that the checksum goes into a tag.
COPY_LIMIT = 5 * 1024**3
# A slow dump fills a part in minutes: between parts, ask S3 about the upload this
# often, so an endpoint that died is noticed within a request's timeout, not at the
# next part.
PROBE_EVERY = 10.0
_CLIENTS = threading.Lock()


@contextlib.contextmanager
def _failures(what: str) -> Iterator[None]:
    """S3's failures as StorageError with the error code and status only: an answer's
    message, or a URL with its uploadId, goes into no record or incident."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        suffix = f" (HTTP {status})" if status else ""
        raise StorageError(f"S3 {what}: {error.get('Code') or 'error'}{suffix}") from None
    except BotoCoreError as exc:
        raise StorageError(f"S3 {what}: {type(exc).__name__}") from None


class _S3Writer(Writer):
    def __init__(self, client, bucket: str, key: str, extra: dict[str, Any]):
        self.client, self.bucket, self.key = client, bucket, key
        with _failures("starting the upload"):
            created = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
        self.upload_id = created["UploadId"]
        self.parts: list[dict[str, Any]] = []
        self.buffer = bytearray()
        self.contact = time.monotonic()

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            room = PART_SIZE - len(self.buffer)
            self.buffer += view[:room]
            view = view[room:]
            if len(self.buffer) >= PART_SIZE:
                # Hand the full buffer over and start a new one: no copy of a part.
                part, self.buffer = self.buffer, bytearray()
                self._upload(part)
        if time.monotonic() - self.contact >= PROBE_EVERY:
            with _failures("checking the upload"):
                self.client.list_parts(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MaxParts=1
                )
            self.contact = time.monotonic()
        return len(data)

    def _upload(self, chunk: bytes | bytearray) -> None:
        number = len(self.parts) + 1
        with _failures(f"uploading part {number}"):
            etag = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=chunk,
            )["ETag"]
        self.parts.append({"ETag": etag, "PartNumber": number})
        self.contact = time.monotonic()

    def commit(self) -> None:
        if self.buffer or not self.parts:
            part, self.buffer = self.buffer, bytearray()
            self._upload(part)
        with _failures("completing the upload"):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )

    def abort(self) -> None:
        self.buffer.clear()
        with _failures("aborting the upload"):
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )


class S3Storage(Storage):
    """Amazon S3 or a compatible service (MinIO, R2) through boto3."""

    kind = "s3"
    label = "S3-compatible"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        if not config.get("bucket"):
            raise ValueError("Set 'bucket'.")
        sse = config.get("server_side_encryption", "AES256")
        if sse not in ("AES256", "aws:kms", ""):
            raise ValueError("server_side_encryption must be AES256, aws:kms or empty.")
        if sse == "aws:kms" and not config.get("kms_key_id"):
            raise ValueError("Set 'kms_key_id' for aws:kms server-side encryption.")
        if bool(config.get("access_key_id")) != bool(secret):
            raise ValueError("Give both 'access_key_id' and the secret access key, or neither.")
        return {**config, "server_side_encryption": sse}

    def client(self):
        endpoint = self.config.get("endpoint_url") or ""
        if endpoint:
            # boto3 connects by itself: the endpoint's every address is checked first (an
            # S3-compatible service inside the network needs OPSCONSOLE_OUTBOUND_ALLOW).
            parts = urlsplit(endpoint)
            try:
                outbound.resolve(parts.hostname or "", parts.port or 443)
            except outbound.OutboundRefused as exc:
                raise StorageError(f"S3 endpoint refused: {exc}") from None
        # Imported here: boto3 costs every process ~10 MB that never stores to S3.
        import boto3
        from botocore.config import Config

        with _CLIENTS:  # boto3's default session builds clients one thread at a time
            return boto3.client(
                "s3",
                region_name=self.config.get("region") or "us-east-1",
                endpoint_url=self.config.get("endpoint_url") or None,
                aws_access_key_id=self.config.get("access_key_id") or None,
                aws_secret_access_key=self.secret or None,
                config=Config(
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                ),
            )

    def _key(self, key: str) -> str:
        prefix = (self.config.get("prefix") or "").strip("/")
        return f"{prefix}/{key}" if prefix else key

    def open_writer(self, key, metadata) -> Writer:
        extra: dict[str, Any] = {
            "Metadata": metadata,
            "StorageClass": self.config.get("storage_class") or "STANDARD_IA",
            "ContentType": "application/octet-stream",
        }
        sse = self.config.get("server_side_encryption", "AES256")
        if sse:
            extra["ServerSideEncryption"] = sse
        if sse == "aws:kms":
            extra["SSEKMSKeyId"] = self.config["kms_key_id"]
        return _S3Writer(self.client(), self.config["bucket"], self._key(key), extra)

    def open_reader(self, key):
        with _failures(f"reading {key!r}"):
            return self.client().get_object(Bucket=self.config["bucket"], Key=self._key(key))[
                "Body"
            ]

    def delete(self, key) -> None:
        with _failures(f"deleting {key!r}"):
            self.client().delete_object(Bucket=self.config["bucket"], Key=self._key(key))

    def exists(self, key) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=self.config["bucket"], Key=self._key(key))
        except ClientError:
            return False
        return True

    def record_checksum(self, key: str, sha256: str) -> None:
        with _failures("recording the checksum"):
            self._record_checksum(key, sha256)

    def _record_checksum(self, key: str, sha256: str) -> None:
        client, bucket, full_key = self.client(), self.config["bucket"], self._key(key)
        head = client.head_object(Bucket=bucket, Key=full_key)
        if head["ContentLength"] < COPY_LIMIT:
            extra = {
                "StorageClass": head.get("StorageClass")
                or self.config.get("storage_class")
                or "STANDARD_IA"
            }
            if head.get("ServerSideEncryption"):
                extra["ServerSideEncryption"] = head["ServerSideEncryption"]
            client.copy_object(
                Bucket=bucket,
                Key=full_key,
                CopySource={"Bucket": bucket, "Key": full_key},
                Metadata={**head.get("Metadata", {}), "sha256": sha256},
                MetadataDirective="REPLACE",
                **extra,
            )
        else:
            client.put_object_tagging(
                Bucket=bucket,
                Key=full_key,
                Tagging={"TagSet": [{"Key": "sha256", "Value": sha256}]},
            )

    def open_uploads(self, key: str = "") -> list[dict[str, str]]:
        """Multipart uploads left open under our prefix (or for one key)."""
        with _failures("listing open uploads"):
            response = self.client().list_multipart_uploads(
                Bucket=self.config["bucket"], Prefix=self._key(key)
            )
        return [
            {"Key": u["Key"], "UploadId": u["UploadId"]}
            for u in response.get("Uploads", [])
            if not key or u["Key"] == self._key(key)
        ]

    def abort_partial(self, key: str) -> int:
        client, bucket = self.client(), self.config["bucket"]
        uploads = self.open_uploads(key)
        for upload in uploads:
            with _failures("aborting an upload"):
                client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        return len(uploads)
