"""Cognito user pool groups: the source of truth for roles."""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import ClientError

from services.aws.clients import TRANSPORT_ERRORS, LazyClient


class DirectoryUnavailable(Exception):
    """Cognito could not be reached or refused for a reason that is not the caller's."""


class UnknownDirectoryUser(Exception):
    """Cognito has no user with this username and sub: the user was deleted, and the
    username may since belong to another Cognito user (a new sub)."""


class GroupDirectory(Protocol):
    """Group changes address a user by username (Cognito's admin APIs know no other way) and
    carry the sub Trellis recorded for them: the change applies only to the Cognito user that
    has that sub now, never to whoever took the username since (UnknownDirectoryUser)."""

    def add_to_group(self, username: str, group: str, *, sub: str) -> None: ...

    def remove_from_group(self, username: str, group: str, *, sub: str) -> None: ...

    # A suspension (services/moderation/suspension.py): the user can no longer sign in or
    # refresh tokens; enabling undoes it. The same sub check as the group changes.
    def admin_disable_user(self, username: str, *, sub: str) -> None: ...

    def admin_enable_user(self, username: str, *, sub: str) -> None: ...

    def delete_account(self, username: str | None, *, sub: str) -> None:
        """Delete the Cognito user that has this sub (by username, or found by sub when the
        username is unknown); done already when Cognito has no such user."""


class CognitoGroups:
    """AdminGetUser (is the user behind the username still the one with this sub?), then
    AdminAddUserToGroup / AdminRemoveUserFromGroup on one pool; the client is built lazily.

    Cognito cannot make the check and the change one operation: a user deleted and replaced
    by one of the same username in the milliseconds between the two calls would still get
    the change. Usernames are only reused after someone deletes the old account, so that
    window is as narrow as it can be made without Cognito's help."""

    def __init__(self, *, user_pool_id: str, region: str, timeout_seconds: float = 5.0) -> None:
        self._pool = user_pool_id
        self._cognito = LazyClient(
            "cognito-idp",
            region=region,
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
            max_attempts=2,
        )

    def add_to_group(self, username: str, group: str, *, sub: str) -> None:
        self._verify(username, sub)
        self._call("admin_add_user_to_group", Username=username, GroupName=group)

    def remove_from_group(self, username: str, group: str, *, sub: str) -> None:
        self._verify(username, sub)
        self._call("admin_remove_user_from_group", Username=username, GroupName=group)

    def admin_disable_user(self, username: str, *, sub: str) -> None:
        self._verify(username, sub)
        self._call("admin_disable_user", Username=username)

    def admin_enable_user(self, username: str, *, sub: str) -> None:
        self._verify(username, sub)
        self._call("admin_enable_user", Username=username)

    def delete_account(self, username: str | None, *, sub: str) -> None:
        name = username or self._username_of(sub)
        if name is None:
            return
        try:
            self._verify(name, sub)
            self._call("admin_delete_user", Username=name)
        except UnknownDirectoryUser:
            return  # deleted already (a rerun), or the username is someone else's now

    def _username_of(self, sub: str) -> str | None:
        if not sub or '"' in sub or "\\" in sub:
            raise UnknownDirectoryUser("not a Cognito sub")
        answer = self._call("list_users", Filter=f'sub = "{sub}"', Limit=1)
        users = answer.get("Users") if isinstance(answer, dict) else None
        if not isinstance(users, list):
            raise DirectoryUnavailable("list_users answered without Users")
        name = users[0].get("Username") if users and isinstance(users[0], dict) else None
        return name if isinstance(name, str) and name else None

    def _verify(self, username: str, sub: str) -> None:
        answer = self._call("admin_get_user", Username=username)
        attributes = answer.get("UserAttributes") if isinstance(answer, dict) else None
        if not isinstance(attributes, list):
            raise DirectoryUnavailable("admin_get_user answered without UserAttributes")
        current = next(
            (a.get("Value") for a in attributes if isinstance(a, dict) and a.get("Name") == "sub"),
            None,
        )
        if not isinstance(current, str) or not current:
            raise DirectoryUnavailable("admin_get_user answered without the user's sub")
        if current != sub:
            raise UnknownDirectoryUser(f"{username} now belongs to another Cognito user")

    def _call(self, operation: str, **arguments: object) -> Any:
        try:
            return getattr(self._cognito(), operation)(UserPoolId=self._pool, **arguments)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "UserNotFoundException":
                raise UnknownDirectoryUser(str(arguments.get("Username"))) from exc
            raise DirectoryUnavailable(f"{operation} failed: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise DirectoryUnavailable(f"{operation} failed: {exc}") from exc
