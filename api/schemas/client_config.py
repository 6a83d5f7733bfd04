"""GET /v1/config: what the apps need to reach this deployment."""

from __future__ import annotations

from pydantic import BaseModel, Field


class UploadRules(BaseModel):
    max_bytes: int = Field(description="the largest file accepted", examples=[5_242_880])
    content_types: list[str] = Field(examples=[["image/heic", "image/jpeg", "image/png"]])


class UploadLimits(BaseModel):
    """What POST /v1/uploads accepts for each purpose: check before asking."""

    avatar: UploadRules
    booking_attachment: UploadRules
    provider_document: UploadRules


class AmplifyAuth(BaseModel):
    """amplify_outputs.json's `auth` section: `Amplify.configure({version: "1.4", auth})`
    signs in to Trellis's user pool with Amplify's Auth libraries."""

    aws_region: str = Field(examples=["eu-west-1"])
    user_pool_id: str = Field(examples=["eu-west-1_AbCdEf123"])
    user_pool_client_id: str = Field(examples=["1example23456789"])


class ClientConfig(BaseModel):
    region: str = Field(description="the user pool's AWS region", examples=["eu-west-1"])
    user_pool_id: str = Field(examples=["eu-west-1_AbCdEf123"])
    app_client_id: str = Field(
        description="the user pool app client the apps sign in with", examples=["1example23456789"]
    )
    api_base_url: str = Field(
        description="prefix every path of this API with it", examples=["https://api.example.com"]
    )
    realtime_url: str | None = Field(description="the realtime service; null while there is none")
    uploads: UploadLimits
    auth: AmplifyAuth
    amplify_outputs_version: str = Field(
        description="the amplify_outputs.json version `auth` is written for", examples=["1.4"]
    )
