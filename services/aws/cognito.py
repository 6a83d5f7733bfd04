"""Cognito user pool groups: the source of truth for roles."""

from __future__ import annotations

import threading
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


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
        self._region = region
        self._timeout = timeout_seconds
        self._client: Any = None
        self._lock = threading.Lock()

    def _cognito(self) -> Any:
        with self._lock:
            if self._client is None:
                config = Config(
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    retries={"max_attempts": 2, "mode": "standard"},
                )
                self._client = boto3.client("cognito-idp", region_name=self._region, config=config)
            return self._client

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
        except BotoCoreError as exc:
            raise DirectoryUnavailable(f"{operation} failed: {exc}") from exc
