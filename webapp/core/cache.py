"""The shared cache (login failures, API throttles) in the Redis that may also hold the Celery broker."""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache


class PrefixedRedisCache(RedisCache):
    """Django's Redis cache whose clear() deletes only keys under its own KEY_PREFIX: the stock one
    runs FLUSHDB, which would also drop the broker's queued messages when both share a database."""

    def clear(self) -> None:
        client = self._cache.get_client(write=True)
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{self.key_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
