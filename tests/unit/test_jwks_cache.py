"""JWKS caching: keys built once, bounded refetching, outages survived."""

from __future__ import annotations

import pytest

from services.accounts.auth import JwksCache
from services.base.errors import InvalidToken, Unavailable
from tests.support.tokens import FakeJwksFetcher, SigningKey


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey(kid="k1")


def test_keys_are_fetched_and_constructed_once(key: SigningKey) -> None:
    fetcher = FakeJwksFetcher(key)
    cache = JwksCache(fetcher, clock=Clock())
    first = cache.key_for("k1")
    for _ in range(100):
        assert cache.key_for("k1") is first
    assert fetcher.fetches == 1


def test_unknown_kid_refetches_once_then_waits_out_the_penalty(key: SigningKey) -> None:
    fetcher, clock = FakeJwksFetcher(key), Clock()
    cache = JwksCache(fetcher, clock=clock, penalty_seconds=10)
    cache.key_for("k1")
    clock.now += 10
    for kid in ("rogue-1", "rogue-2", "rogue-3"):
        with pytest.raises(InvalidToken):
            cache.key_for(kid)
    assert fetcher.fetches == 2  # the first unknown kid refetched; the rest waited
    clock.now += 9.9
    with pytest.raises(InvalidToken):
        cache.key_for("rogue-4")
    assert fetcher.fetches == 2
    clock.now += 0.1
    with pytest.raises(InvalidToken):
        cache.key_for("rogue-5")
    assert fetcher.fetches == 3


def test_rotated_key_is_picked_up_by_the_refetch(key: SigningKey) -> None:
    fetcher, clock = FakeJwksFetcher(key), Clock()
    cache = JwksCache(fetcher, clock=clock)
    cache.key_for("k1")
    fetcher.keys.append(SigningKey(kid="k2"))
    clock.now += 30
    assert cache.key_for("k2") is not None
    assert cache.key_for("k1") is not None
    assert fetcher.fetches == 2


def test_outage_keeps_serving_cached_keys(key: SigningKey) -> None:
    fetcher, clock = FakeJwksFetcher(key), Clock()
    cache = JwksCache(fetcher, clock=clock)
    cached = cache.key_for("k1")
    fetcher.down = True
    clock.now += 60
    with pytest.raises(InvalidToken):  # unknown kid is still a bad token, not an outage
        cache.key_for("k9")
    assert cache.key_for("k1") is cached


def test_no_keys_at_all_is_unavailable_and_recovers(key: SigningKey) -> None:
    fetcher, clock = FakeJwksFetcher(key), Clock()
    fetcher.down = True
    cache = JwksCache(fetcher, clock=clock)
    with pytest.raises(Unavailable) as caught:
        cache.key_for("k1")
    assert caught.value.retry_after == 10
    with pytest.raises(Unavailable):
        cache.key_for("k1")
    assert fetcher.fetches == 1  # the penalty box holds during an outage too
    fetcher.down = False
    clock.now += 10
    assert cache.key_for("k1") is not None


def test_unusable_keys_in_the_set_are_skipped(key: SigningKey) -> None:
    class MixedFetcher(FakeJwksFetcher):
        def fetch(self) -> list[dict[str, object]]:
            good = key.jwk()
            return [
                {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
                {**good, "kid": "enc", "use": "enc"},
                {**good, "kid": "hs", "alg": "HS256"},
                {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
                {**good, "kid": None},
                good,
            ]

    cache = JwksCache(MixedFetcher(), clock=Clock())
    assert cache.key_for("k1") is not None
    for kid in ("broken", "enc", "hs", "sym"):
        with pytest.raises(InvalidToken):
            cache.key_for(kid)
