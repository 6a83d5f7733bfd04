"""boto3 clients built on first use, once per adapter, safely across threads."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from botocore.parsers import ResponseParserError

# AWS failed without a well-formed AWS error: no connection, a timeout, or an answer botocore
# could not parse (an HTML page from a proxy; ResponseParserError is no BotoCoreError).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ResponseParserError)


class LazyClient:
    """Call it to get the client. Nothing is built (and no credentials looked up) before the
    first call, so start-up and the tests that never touch this service stay fast."""

    def __init__(
        self,
        service: str,
        *,
        region: str,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        **config: Any,
    ) -> None:
        self._service = service
        self._region = region
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            **config,
        )
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = boto3.client(
                    self._service, region_name=self._region, config=self._config
                )
            return self._client
