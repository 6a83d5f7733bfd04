"""SNS mobile push: platform endpoints for devices, and publishing to them."""

from __future__ import annotations

from typing import Protocol

from botocore.exceptions import ClientError

from services.aws.clients import TRANSPORT_ERRORS, LazyClient


class PushUnavailable(Exception):
    """SNS failed in a way worth retrying."""


class EndpointGone(Exception):
    """The endpoint is disabled or deleted (the app was uninstalled): do not retry it."""


class PushGateway(Protocol):
    def register(self, *, platform: str, token: str, user_data: str, arn: str | None) -> str: ...

    def unregister(self, arn: str) -> None: ...

    def publish(self, *, arn: str, message: str) -> str: ...


class SnsPush:
    """SNS platform applications for iOS (APNs) and Android (FCM)."""

    def __init__(self, *, region: str, applications: dict[str, str | None]) -> None:
        self._applications = applications
        self.client = LazyClient(
            "sns", region=region, connect_timeout=3, read_timeout=5, max_attempts=2
        )

    def register(self, *, platform: str, token: str, user_data: str, arn: str | None) -> str:
        """The endpoint for `token`, created or repaired (enabled, right token): AWS's pattern."""
        application = self._applications.get(platform)
        if not application:
            raise PushUnavailable(f"no SNS platform application configured for {platform}")
        try:
            if arn is None:
                arn = self.client().create_platform_endpoint(
                    PlatformApplicationArn=application, Token=token, CustomUserData=user_data
                )["EndpointArn"]
            try:
                attributes = self.client().get_endpoint_attributes(EndpointArn=arn)["Attributes"]
            except ClientError as exc:
                if _code(exc) != "NotFound":
                    raise
                return self.register(platform=platform, token=token, user_data=user_data, arn=None)
            if attributes.get("Token") != token or attributes.get("Enabled") != "true":
                self.client().set_endpoint_attributes(
                    EndpointArn=arn,
                    Attributes={"Token": token, "Enabled": "true", "CustomUserData": user_data},
                )
            return str(arn)
        except (*TRANSPORT_ERRORS, ClientError) as exc:
            raise PushUnavailable(f"register failed: {exc}") from exc

    def unregister(self, arn: str) -> None:
        try:
            self.client().delete_endpoint(EndpointArn=arn)
        except (*TRANSPORT_ERRORS, ClientError) as exc:
            raise PushUnavailable(f"delete endpoint failed: {exc}") from exc

    def publish(self, *, arn: str, message: str) -> str:
        """Publish a MessageStructure=json message; EndpointGone if the device is gone."""
        try:
            result = self.client().publish(TargetArn=arn, Message=message, MessageStructure="json")
        except ClientError as exc:
            if _code(exc) in ("EndpointDisabled", "NotFound", "EndpointDisabledException"):
                raise EndpointGone(arn) from exc
            raise PushUnavailable(f"publish failed: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise PushUnavailable(f"publish failed: {exc}") from exc
        return str(result["MessageId"])


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
