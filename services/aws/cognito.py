"""Cognito user pool groups: the source of truth for roles."""

from __future__ import annotations

from typing import Protocol

from botocore.exceptions import ClientError

from services.aws.clients import TRANSPORT_ERRORS, LazyClient


class DirectoryUnavailable(Exception):
    """Cognito could not be reached or refused for a reason that is not the caller's."""


class UnknownDirectoryUser(Exception):
    """Cognito has no such user."""


class GroupDirectory(Protocol):
    def add_to_group(self, username: str, group: str) -> None: ...

    def remove_from_group(self, username: str, group: str) -> None: ...


class CognitoGroups:
    """AdminAddUserToGroup / AdminRemoveUserFromGroup on one pool; the client is built lazily."""

    def __init__(self, *, user_pool_id: str, region: str, timeout_seconds: float = 5.0) -> None:
        self._pool = user_pool_id
        self._cognito = LazyClient(
            "cognito-idp",
            region=region,
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
            max_attempts=2,
        )

    def add_to_group(self, username: str, group: str) -> None:
        self._call("admin_add_user_to_group", username, group)

    def remove_from_group(self, username: str, group: str) -> None:
        self._call("admin_remove_user_from_group", username, group)

    def _call(self, operation: str, username: str, group: str) -> None:
        try:
            getattr(self._cognito(), operation)(
                UserPoolId=self._pool, Username=username, GroupName=group
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "UserNotFoundException":
                raise UnknownDirectoryUser(username) from exc
            raise DirectoryUnavailable(f"{operation} failed: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise DirectoryUnavailable(f"{operation} failed: {exc}") from exc
