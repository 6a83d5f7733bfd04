"""moto in-process AWS for integration tests: real boto3 calls, no network."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from moto import mock_aws

REGION = "us-east-1"


@contextmanager
def emulated_aws() -> Iterator[None]:
    with mock_aws():
        yield


def platform_applications() -> dict[str, str]:
    """One SNS platform application per platform (APNs sandbox, FCM), in the emulator."""
    sns = boto3.client("sns", region_name=REGION)
    ios = sns.create_platform_application(
        Name="trellis-ios", Platform="APNS_SANDBOX", Attributes={"PlatformCredential": "x"}
    )["PlatformApplicationArn"]
    android = sns.create_platform_application(
        Name="trellis-android", Platform="GCM", Attributes={"PlatformCredential": "x"}
    )["PlatformApplicationArn"]
    return {"ios": ios, "android": android}
