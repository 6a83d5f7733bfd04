"""In-memory stand-ins for the S3 and SNS adapters (the AWS boundary) in fast tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from services.aws.cognito import DirectoryUnavailable, UnknownDirectoryUser
from services.aws.s3 import PresignedPost, StorageUnavailable, StoredObject
from services.aws.sns import EndpointGone, PushUnavailable


@dataclass
class FakeStore:
    objects: dict[str, StoredObject] = field(default_factory=dict)
    # The bytes of objects written with open_write (objects holds what head sees).
    contents: dict[str, bytes] = field(default_factory=dict)
    down: bool = False

    def _check(self) -> None:
        if self.down:
            raise StorageUnavailable("simulated outage")

    def presign_post(
        self, *, key: str, content_type: str, max_bytes: int, expires_in: int
    ) -> PresignedPost:
        return PresignedPost(
            url="https://uploads.example/bucket", fields={"key": key, "Content-Type": content_type}
        )

    def presign_get(self, *, key: str, expires_in: int) -> str:
        return f"https://uploads.example/bucket/{key}?expires={expires_in}"

    def open_write(self, key: str, *, content_type: str) -> _FakeWrite:
        self._check()
        return _FakeWrite(self, key, content_type)

    def head(self, key: str) -> StoredObject | None:
        self._check()
        return self.objects.get(key)

    def delete(self, key: str) -> None:
        self._check()
        self.objects.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        self._check()
        keys = [key for key in self.objects if key.startswith(prefix)]
        for key in keys:
            del self.objects[key]
        return len(keys)

    def ensure_bucket(self, *, cors_origins: list[str]) -> list[str]:
        return ["fake bucket"]


@dataclass
class _FakeWrite:
    """An object being streamed into a FakeStore: kept only once committed."""

    store: FakeStore
    key: str
    content_type: str
    data: bytearray = field(default_factory=bytearray)
    aborted: bool = False

    def write(self, data: bytes) -> None:
        self.store._check()
        self.data += data

    def commit(self) -> int:
        self.store._check()
        self.store.contents[self.key] = bytes(self.data)
        self.store.objects[self.key] = StoredObject(len(self.data), self.content_type)
        return len(self.data)

    def abort(self) -> None:
        self.aborted = True


@dataclass
class FakePush:
    """Records every publish; `down` makes SNS fail; `gone` holds endpoints that were removed."""

    published: list[tuple[str, str]] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)  # arn -> token
    gone: set[str] = field(default_factory=set)
    down: bool = False

    def register(self, *, platform: str, token: str, user_data: str, arn: str | None) -> str:
        if self.down:
            raise PushUnavailable("simulated outage")
        if arn is None or arn in self.gone:
            arn = next((a for a, t in self.endpoints.items() if t == token), None) or (
                f"arn:aws:sns:us-east-1:123456789012:endpoint/{platform}/{uuid.uuid4()}"
            )
        self.endpoints[arn] = token
        self.gone.discard(arn)
        return arn

    def unregister(self, arn: str) -> None:
        if self.down:
            raise PushUnavailable("simulated outage")
        self.endpoints.pop(arn, None)

    def publish(self, *, arn: str, message: str) -> str:
        if self.down:
            raise PushUnavailable("simulated outage")
        if arn in self.gone:
            raise EndpointGone(arn)
        self.published.append((arn, message))
        return str(uuid.uuid4())


@dataclass
class FakeGroups:
    """Cognito groups in memory: role grants and revocations never leave the process.

    Models Cognito users minimally, as username -> sub: a username seen for the first time
    belongs to the sub its caller gives. `replace_user` deletes the user and lets a new one
    (a new sub) take the username; `delete_user` deletes it. A change for a username whose
    user no longer has the sub given raises UnknownDirectoryUser, as CognitoGroups does."""

    members: set[tuple[str, str]] = field(default_factory=set)
    users: dict[str, str | None] = field(default_factory=dict)  # username -> sub (None: gone)
    down: bool = False  # delete_account fails as if Cognito were unreachable
    disabled: set[str] = field(default_factory=set)  # usernames AdminDisableUser disabled
    # Every AdminDisableUser / AdminEnableUser call, in order: ("disable" | "enable", username).
    # They fail like a Cognito outage while `down` is set.
    switches: list[tuple[str, str]] = field(default_factory=list)

    def add_to_group(self, username: str, group: str, *, sub: str) -> None:
        self._check(username, sub)
        self.members.add((username, group))

    def remove_from_group(self, username: str, group: str, *, sub: str) -> None:
        self._check(username, sub)
        self.members.discard((username, group))

    def admin_disable_user(self, username: str, *, sub: str) -> None:
        self._switch("disable", username, sub)
        self.disabled.add(username)

    def admin_enable_user(self, username: str, *, sub: str) -> None:
        self._switch("enable", username, sub)
        self.disabled.discard(username)

    def _switch(self, action: str, username: str, sub: str) -> None:
        if self.down:
            raise DirectoryUnavailable("simulated outage")
        self._check(username, sub)
        self.switches.append((action, username))

    def replace_user(self, username: str) -> str:
        """The user is deleted and a new one signs up with the same username: its sub."""
        self.delete_user(username)
        sub = self.users[username] = f"sub-{uuid.uuid4().hex[:12]}"
        return sub

    def delete_user(self, username: str) -> None:
        self.users[username] = None
        self.members = {(u, g) for u, g in self.members if u != username}

    def delete_account(self, username: str | None, *, sub: str) -> None:
        if self.down:
            raise DirectoryUnavailable("simulated outage")
        name = username or next((u for u, s in self.users.items() if s == sub), None)
        if name is not None and self.users.get(name) == sub:
            self.delete_user(name)

    def _check(self, username: str, sub: str) -> None:
        if self.users.setdefault(username, sub) != sub:
            raise UnknownDirectoryUser(username)
