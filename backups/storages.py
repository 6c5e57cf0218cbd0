"""Where backup objects live: one class per kind, one registry.

A writer streams an object in and either commits it whole or leaves nothing:
local storage writes a temporary name and renames it; S3 uses a multipart
upload that is completed on commit and aborted otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, ClassVar

from django.conf import settings

# S3 parts: 16 MiB keeps memory bounded and allows 160 GiB objects in 10,000 parts.
PART_SIZE = 16 * 1024 * 1024


class StorageError(Exception):
    pass


class Writer:
    def write(self, data: bytes) -> int:
        raise StorageError("not writable")

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class Storage:
    kind: ClassVar[str]
    label: ClassVar[str]

    def __init__(self, location):
        self.location = location
        self.config: dict[str, Any] = location.config or {}
        self.secret: str = location.secret or ""

    @classmethod
    def validate(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise ValueError("The configuration must be a JSON object.")
        return config

    def open_writer(self, key: str, metadata: dict[str, str]) -> Writer:
        raise StorageError("not implemented for this storage")

    def open_reader(self, key: str) -> IO[bytes]:
        raise StorageError("not implemented for this storage")

    def delete(self, key: str) -> None:
        raise StorageError("not implemented for this storage")

    def exists(self, key: str) -> bool:
        raise StorageError("not implemented for this storage")


# --- local folder ----------------------------------------------------------------


class _LocalWriter(Writer):
    def __init__(self, final: Path):
        self.final = final
        self.partial = final.with_name(final.name + ".partial")
        final.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.partial, self.final)

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.partial.unlink(missing_ok=True)


class LocalStorage(Storage):
    """A folder on this machine (the embedded default: var/backups)."""

    kind = "local"
    label = "Local folder"

    @property
    def root(self) -> Path:
        return Path(self.config.get("path") or settings.VAR_DIR / "backups")

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"key {key!r} escapes the storage folder")
        return path

    def open_writer(self, key, metadata) -> Writer:
        return _LocalWriter(self._path(key))

    def open_reader(self, key):
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise StorageError(f"no object {key!r} in {self.root}") from None

    def delete(self, key) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key) -> bool:
        return self._path(key).exists()


# --- S3 and compatibles ----------------------------------------------------------------


class _S3Writer(Writer):
    def __init__(self, client, bucket: str, key: str, extra: dict[str, Any]):
        self.client, self.bucket, self.key = client, bucket, key
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
        self.parts: list[dict[str, Any]] = []
        self.buffer = bytearray()

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
        return len(data)

    def _upload(self, chunk: bytes | bytearray) -> None:
        number = len(self.parts) + 1
        etag = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=chunk
        )["ETag"]
        self.parts.append({"ETag": etag, "PartNumber": number})

    def commit(self) -> None:
        if self.buffer or not self.parts:
            part, self.buffer = self.buffer, bytearray()
            self._upload(part)
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    def abort(self) -> None:
        self.buffer.clear()
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
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            region_name=self.config.get("region") or "us-east-1",
            endpoint_url=self.config.get("endpoint_url") or None,
            aws_access_key_id=self.config.get("access_key_id") or None,
            aws_secret_access_key=self.secret or None,
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60
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
        from botocore.exceptions import ClientError

        try:
            return self.client().get_object(Bucket=self.config["bucket"], Key=self._key(key))[
                "Body"
            ]
        except ClientError as exc:
            raise StorageError(
                f"cannot read {key!r}: {exc.response['Error'].get('Code')}"
            ) from None

    def delete(self, key) -> None:
        self.client().delete_object(Bucket=self.config["bucket"], Key=self._key(key))

    def exists(self, key) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=self.config["bucket"], Key=self._key(key))
        except ClientError:
            return False
        return True

    def open_uploads(self) -> list[str]:
        """Multipart uploads left open under our prefix (a reaper aborts them)."""
        response = self.client().list_multipart_uploads(
            Bucket=self.config["bucket"], Prefix=self._key("")
        )
        return [u["UploadId"] for u in response.get("Uploads", [])]


STORAGE_KINDS: dict[str, type[Storage]] = {cls.kind: cls for cls in (LocalStorage, S3Storage)}
