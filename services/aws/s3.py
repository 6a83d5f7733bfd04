"""S3 for uploads: presigned POSTs the phone uses directly, and checks of what arrived."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from services.aws.clients import TRANSPORT_ERRORS, LazyClient

if TYPE_CHECKING:
    from services.aws.exports import ExportObject


class StorageUnavailable(Exception):
    """S3 could not be reached or answered with an error that is not about the object."""


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]


@dataclass(frozen=True)
class StoredObject:
    size_bytes: int
    content_type: str


class ObjectStore(Protocol):
    def presign_post(
        self, *, key: str, content_type: str, max_bytes: int, expires_in: int
    ) -> PresignedPost: ...

    def presign_get(self, *, key: str, expires_in: int) -> str: ...

    def head(self, key: str) -> StoredObject | None: ...

    def open_write(self, key: str, *, content_type: str) -> ExportObject:
        """An object streamed up (SSE-KMS) as it is written; visible once committed."""
        ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`, every version of it included; how many."""
        ...

    def ensure_bucket(self, *, cors_origins: list[str]) -> list[str]: ...


class S3Store:
    """One bucket; every object encrypted with KMS (the key pinned when one is configured)."""

    def __init__(self, *, bucket: str, region: str, kms_key_id: str | None) -> None:
        self.bucket = bucket
        self._region = region
        self._kms_key_id = kms_key_id
        self.client = LazyClient(
            "s3",
            region=region,
            connect_timeout=3,
            read_timeout=5,
            max_attempts=2,
            signature_version="s3v4",
        )

    def _encryption(self) -> dict[str, str]:
        fields = {"x-amz-server-side-encryption": "aws:kms"}
        if self._kms_key_id:
            fields["x-amz-server-side-encryption-aws-kms-key-id"] = self._kms_key_id
        return fields

    def presign_post(
        self, *, key: str, content_type: str, max_bytes: int, expires_in: int
    ) -> PresignedPost:
        """A POST policy pinning the key, the type, the size range and KMS encryption.

        Presigning is local computation: it works even while S3 itself is unreachable.
        """
        fields = {"Content-Type": content_type, **self._encryption()}
        conditions: list[Any] = [
            {"bucket": self.bucket},
            ["eq", "$key", key],
            ["content-length-range", 1, max_bytes],
            *({name: value} for name, value in fields.items()),
        ]
        try:
            post = self.client().generate_presigned_post(
                Bucket=self.bucket,
                Key=key,
                Fields=fields,
                Conditions=conditions,
                ExpiresIn=expires_in,
            )
        except (*TRANSPORT_ERRORS, ClientError, AttributeError) as exc:
            # AttributeError: botocore's POST signer with no credentials at all.
            raise StorageUnavailable(f"presign failed: {exc!r}") from exc
        return PresignedPost(url=post["url"], fields=dict(post["fields"]))

    def presign_get(self, *, key: str, expires_in: int) -> str:
        try:
            return str(
                self.client().generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
                )
            )
        except (*TRANSPORT_ERRORS, ClientError) as exc:
            raise StorageUnavailable(f"presign failed: {exc}") from exc

    def open_write(self, key: str, *, content_type: str) -> ExportObject:
        """Stream an object up, SSE-KMS: multipart parts of ~8 MiB, so memory holds one part
        whatever the object's size (a personal data export)."""
        # Imported here: services.aws.exports builds on this module's bucket helpers.
        from services.aws.exports import DEFAULT_CHUNK_BYTES, StreamedObject

        encryption = {"ServerSideEncryption": "aws:kms"}
        if self._kms_key_id:
            encryption["SSEKMSKeyId"] = self._kms_key_id
        return StreamedObject(
            self.client(),
            bucket=self.bucket,
            key=key,
            attributes={"ContentType": content_type, **encryption},
            chunk_bytes=DEFAULT_CHUNK_BYTES,
        )

    def head(self, key: str) -> StoredObject | None:
        """What S3 holds at `key`, or None if nothing is there."""
        try:
            head = self.client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise StorageUnavailable(f"head {key} failed: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise StorageUnavailable(f"head {key} failed: {exc}") from exc
        return StoredObject(int(head["ContentLength"]), str(head.get("ContentType", "")))

    def delete(self, key: str) -> None:
        try:
            self.client().delete_object(Bucket=self.bucket, Key=key)
        except (*TRANSPORT_ERRORS, ClientError) as exc:
            raise StorageUnavailable(f"delete {key} failed: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        # The bucket is versioned: deleting a key only stacks a delete marker on its old
        # versions, so every version (and marker) is deleted by id.
        deleted = 0
        try:
            pages = self.client().get_paginator("list_object_versions")
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                versions = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                batch = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]
                for start in range(0, len(batch), 1000):  # delete_objects takes 1000 at most
                    deleted += self._delete_batch(batch[start : start + 1000])
        except (*TRANSPORT_ERRORS, ClientError) as exc:
            raise StorageUnavailable(f"delete under {prefix} failed: {exc}") from exc
        return deleted

    def _delete_batch(self, objects: list[dict[str, str]]) -> int:
        answer = self.client().delete_objects(
            Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
        )
        if answer.get("Errors"):
            raise StorageUnavailable(f"delete_objects refused some: {answer['Errors'][:3]}")
        return len(objects)

    def ensure_bucket(self, *, cors_origins: list[str]) -> list[str]:
        """Create the bucket if missing; block public access; KMS default encryption;
        versioning; CORS for browser-style POSTs; archival lifecycle. Idempotent."""
        s3 = self.client()
        done = [create_bucket(s3, self.bucket, self._region)]
        protect_bucket(s3, self.bucket, self._kms_key_id)
        s3.put_bucket_cors(
            Bucket=self.bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedMethods": ["POST", "GET"],
                        "AllowedOrigins": cors_origins,
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag"],
                        "MaxAgeSeconds": 3000,
                    }
                ]
            },
        )
        done.append(f"{self.bucket}: public access blocked, KMS encryption, versioning, CORS")
        done.append(f"{self.bucket}: {apply_archival_lifecycle(s3, self.bucket)}")
        return done


def create_bucket(s3: Any, bucket: str, region: str) -> str:
    """Create `bucket` unless it exists; a line saying which."""
    try:
        s3.head_bucket(Bucket=bucket)
        return f"{bucket}: exists"
    except ClientError:
        pass
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    return f"{bucket}: created"


def protect_bucket(s3: Any, bucket: str, kms_key_id: str | None) -> None:
    """Block public access, encrypt by default with KMS (the key pinned when configured) and
    keep versions."""
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    rule: dict[str, Any] = {"SSEAlgorithm": "aws:kms"}
    if kms_key_id:
        rule["KMSMasterKeyID"] = kms_key_id
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": rule, "BucketKeyEnabled": True}]
        },
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


# Archival: current objects move to S3 Glacier Flexible Retrieval (GLACIER) after 180 days;
# versions replaced or deleted are kept 30 days; multipart uploads never finished are aborted
# after 7 days. A GLACIER object must be restored before it can be read again.
ARCHIVE_AFTER_DAYS = 180
ARCHIVE_STORAGE_CLASS = "GLACIER"
NONCURRENT_VERSION_DAYS = 30
ABORT_MULTIPART_DAYS = 7


def archival_rules() -> list[dict[str, Any]]:
    return [
        {
            "ID": "trellis-archival",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "Transitions": [{"Days": ARCHIVE_AFTER_DAYS, "StorageClass": ARCHIVE_STORAGE_CLASS}],
            "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_VERSION_DAYS},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
        }
    ]


def apply_archival_lifecycle(s3: Any, bucket: str) -> str:
    """Replace the bucket's lifecycle configuration with the archival rules (idempotent)."""
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": archival_rules()}
    )
    return (
        f"lifecycle: {ARCHIVE_STORAGE_CLASS} after {ARCHIVE_AFTER_DAYS} days, noncurrent "
        f"versions expire after {NONCURRENT_VERSION_DAYS} days, incomplete multipart uploads "
        f"aborted after {ABORT_MULTIPART_DAYS} days"
    )
