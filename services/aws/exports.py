"""S3 for scheduled exports: objects streamed up in multipart chunks, SSE-KMS, bucket setup."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

from botocore.exceptions import ClientError

from services.aws.clients import TRANSPORT_ERRORS, LazyClient
from services.aws.s3 import (
    StorageUnavailable,
    apply_archival_lifecycle,
    create_bucket,
    protect_bucket,
)

# S3 wants every multipart chunk but the last to be at least 5 MiB.
MIN_CHUNK_BYTES = 5 * 1024 * 1024
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024


class ExportObject(Protocol):
    """One object being written: bytes go up as they come; nothing is visible until commit."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> int:
        """Finish the object (it becomes visible); returns its size in bytes."""
        ...

    def abort(self) -> None:
        """Drop whatever was uploaded so far (best effort, never raises)."""
        ...


class ExportSink(Protocol):
    """Where exports go: one bucket."""

    bucket: str

    def open(self, key: str, *, content_type: str) -> ExportObject: ...

    def put(self, key: str, body: bytes, *, content_type: str) -> None: ...

    def delete(self, keys: Sequence[str]) -> None: ...

    def ensure_bucket(self) -> list[str]: ...


class S3ExportStore:
    """The export bucket. Objects are written with SSE-KMS (the key pinned when configured).

    An object is streamed: its bytes are buffered up to `chunk_bytes` and then sent as one
    part of a multipart upload, so memory holds at most one chunk per open object whatever
    its size. An object smaller than one chunk is sent with a single PUT.
    """

    def __init__(
        self,
        *,
        bucket: str,
        region: str,
        kms_key_id: str | None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        if chunk_bytes < MIN_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be at least {MIN_CHUNK_BYTES}")
        self.bucket = bucket
        self._region = region
        self._kms_key_id = kms_key_id
        self._chunk_bytes = chunk_bytes
        self.client = LazyClient(
            "s3",
            region=region,
            connect_timeout=5,
            read_timeout=60,
            max_attempts=5,
            signature_version="s3v4",
        )

    def _encryption(self) -> dict[str, str]:
        fields = {"ServerSideEncryption": "aws:kms"}
        if self._kms_key_id:
            fields["SSEKMSKeyId"] = self._kms_key_id
        return fields

    def open(self, key: str, *, content_type: str) -> ExportObject:
        return StreamedObject(
            self.client(),
            bucket=self.bucket,
            key=key,
            attributes={"ContentType": content_type, **self._encryption()},
            chunk_bytes=self._chunk_bytes,
        )

    def put(self, key: str, body: bytes, *, content_type: str) -> None:
        try:
            self.client().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                **self._encryption(),
            )
        except (*TRANSPORT_ERRORS, ClientError) as exc:
            raise StorageUnavailable(f"put {key} failed: {exc}") from exc

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            try:
                self.client().delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except (*TRANSPORT_ERRORS, ClientError) as exc:
                raise StorageUnavailable(f"delete failed: {exc}") from exc

    def ensure_bucket(self) -> list[str]:
        """Create the bucket if missing; block public access; KMS default encryption;
        versioning; archival lifecycle. Idempotent."""
        s3 = self.client()
        done = [create_bucket(s3, self.bucket, self._region)]
        protect_bucket(s3, self.bucket, self._kms_key_id)
        done.append(f"{self.bucket}: public access blocked, KMS encryption, versioning")
        done.append(f"{self.bucket}: {apply_archival_lifecycle(s3, self.bucket)}")
        return done


class StreamedObject:
    def __init__(
        self, s3: Any, *, bucket: str, key: str, attributes: dict[str, str], chunk_bytes: int
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._key = key
        self._attributes = attributes
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self._size += len(data)
        if len(self._buffer) >= self._chunk_bytes:
            self._send_chunk()

    def _send_chunk(self) -> None:
        try:
            if self._upload_id is None:
                started = self._s3.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, **self._attributes
                )
                self._upload_id = str(started["UploadId"])
            # Hand the buffer itself to botocore (no copy) and start a fresh one.
            chunk, self._buffer = self._buffer, bytearray()
            number = len(self._parts) + 1
            sent = self._s3.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=chunk,
            )
        except (*TRANSPORT_ERRORS, ClientError) as exc:
            raise StorageUnavailable(f"upload of {self._key} failed: {exc}") from exc
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    def commit(self) -> int:
        try:
            if self._upload_id is None:
                self._s3.put_object(
                    Bucket=self._bucket, Key=self._key, Body=self._buffer, **self._attributes
                )
                self._buffer = bytearray()
                return self._size
            if self._buffer:
                self._send_chunk()
            self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        except (*TRANSPORT_ERRORS, ClientError) as exc:
            raise StorageUnavailable(f"upload of {self._key} failed: {exc}") from exc
        return self._size

    def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        # The bucket's lifecycle aborts what this misses after 7 days.
        with contextlib.suppress(*TRANSPORT_ERRORS, ClientError):
            self._s3.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
