"""The rest of the local AWS emulation: SNS platform applications and the uploads bucket."""

from __future__ import annotations

import subprocess

import boto3

from devstack.processes import BIN, ROOT


def push_applications(endpoint_url: str, region: str = "us-east-1") -> dict[str, str]:
    """SNS platform applications for iOS (APNs sandbox) and Android (FCM), as settings."""
    sns = boto3.client(
        "sns",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    arns = {
        platform: sns.create_platform_application(
            Name=f"trellis-{platform.lower()}",
            Platform=platform,
            Attributes={"PlatformCredential": "local-emulator"},
        )["PlatformApplicationArn"]
        for platform in ("APNS_SANDBOX", "GCM")
    }
    return {
        "SNS_PLATFORM_APPLICATION_ARN_IOS": arns["APNS_SANDBOX"],
        "SNS_PLATFORM_APPLICATION_ARN_ANDROID": arns["GCM"],
    }


def ensure_buckets(env: dict[str, str]) -> None:
    """`flask infra ensure`, as an operator would run it."""
    subprocess.run(
        [str(BIN / "flask"), "--app", "application", "infra", "ensure"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
