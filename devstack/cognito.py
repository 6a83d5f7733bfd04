"""Provision an emulated Cognito user pool with groups and demo users, and sign users in."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3

GROUPS = ("consumers", "providers", "admins")
DEMO_PASSWORD = "Trellis-demo-1!"
DEMO_USERS = {
    "consumer": ("consumer@demo.trellis.local", ["consumers"]),
    "provider": ("provider@demo.trellis.local", ["providers"]),
    "admin": ("admin@demo.trellis.local", ["admins"]),
}


@dataclass(frozen=True)
class LocalPool:
    """What Trellis and the token command need to know about the emulated pool."""

    endpoint_url: str
    region: str
    pool_id: str
    client_id: str

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint_url}/{self.pool_id}/.well-known/jwks.json"

    def trellis_env(self) -> dict[str, str]:
        return {
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "COGNITO_USER_POOL_ID": self.pool_id,
            "COGNITO_APP_CLIENT_IDS": self.client_id,
            "COGNITO_JWKS_URL": self.jwks_url,
        }

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> LocalPool:
        return cls(**json.loads(path.read_text()))


def cognito_client(endpoint_url: str, region: str) -> Any:
    return boto3.client(
        "cognito-idp",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def provision(endpoint_url: str, region: str = "us-east-1") -> LocalPool:
    """A pool, an app client that allows admin password sign-in, the groups and demo users."""
    client = cognito_client(endpoint_url, region)
    pool_id = client.create_user_pool(PoolName="trellis-local")["UserPool"]["Id"]
    client_id = client.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="trellis-mobile",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    for group in GROUPS:
        client.create_group(UserPoolId=pool_id, GroupName=group)
    pool = LocalPool(endpoint_url, region, pool_id, client_id)
    for username, (email, groups) in DEMO_USERS.items():
        add_user(pool, username, email=email, groups=groups)
    return pool


def demo_subs(pool: LocalPool) -> dict[str, str]:
    """Each demo user's Cognito `sub`: the identity Trellis's users rows are keyed by."""
    client = cognito_client(pool.endpoint_url, pool.region)
    subs = {}
    for username in DEMO_USERS:
        attributes = client.admin_get_user(UserPoolId=pool.pool_id, Username=username)
        subs[username] = next(
            a["Value"] for a in attributes["UserAttributes"] if a["Name"] == "sub"
        )
    return subs


def add_user(
    pool: LocalPool, username: str, *, email: str, groups: list[str], password: str = DEMO_PASSWORD
) -> None:
    client = cognito_client(pool.endpoint_url, pool.region)
    client.admin_create_user(
        UserPoolId=pool.pool_id,
        Username=username,
        UserAttributes=[
            {"Name": "email", "Value": email},
            {"Name": "email_verified", "Value": "true"},
        ],
        MessageAction="SUPPRESS",
    )
    client.admin_set_user_password(
        UserPoolId=pool.pool_id, Username=username, Password=password, Permanent=True
    )
    for group in groups:
        client.admin_add_user_to_group(UserPoolId=pool.pool_id, Username=username, GroupName=group)


def sign_in(pool: LocalPool, username: str, password: str = DEMO_PASSWORD) -> dict[str, str]:
    """Tokens for a user, exactly as a mobile app gets them (AdminInitiateAuth)."""
    client = cognito_client(pool.endpoint_url, pool.region)
    result = client.admin_initiate_auth(
        UserPoolId=pool.pool_id,
        ClientId=pool.client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )["AuthenticationResult"]
    return {"access": result["AccessToken"], "id": result["IdToken"]}
