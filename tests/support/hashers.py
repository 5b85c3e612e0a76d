"""A hasher factory that counts what it made and what they were fed: the seam for tests of
which requests are hashed (`ResponseCache(new_hasher=...)`)."""

from __future__ import annotations

from gateway.cache import input_hasher
from gateway.multipart import Hasher


class _Fed:
    """The real input hasher, counting the bytes it is fed."""

    def __init__(self, factory: CountingHashers) -> None:
        self._inner, self._factory = input_hasher(), factory
        self.name = self._inner.name

    def update(self, data: bytes | memoryview, /) -> object:
        self._factory.fed += len(data)
        return self._inner.update(data)

    def hexdigest(self) -> str:
        return self._inner.hexdigest()


class CountingHashers:
    """Makes input hashers, counting them (`made`) and the bytes fed to all (`fed`)."""

    def __init__(self) -> None:
        self.made = 0
        self.fed = 0

    def __call__(self) -> Hasher:
        self.made += 1
        return _Fed(self)
