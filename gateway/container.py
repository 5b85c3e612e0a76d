"""The long-lived parts a request handler reads, as one record: `services.py` builds it in the
app's lifespan and the routes find it at `request.app.state.services`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from gateway.admin.operations import AdminOps
from gateway.auth.identity import Identity
from gateway.background import Detached
from gateway.cache import ResponseCache
from gateway.door import Door
from gateway.quota.ledger import QuotaLedger
from gateway.store.base import Store
from gateway.upstream.base import Upstream
from gateway.upstream.hosting import ImageHost
from gateway.vocabulary import OnTimeout, Unit


@dataclass(frozen=True)
class Services:
    """Everything a request handler needs, built from one `Settings` (which it does not hold:
    the few values handlers read are plain fields)."""

    door: Door  # who gets in: identity, quota room, a place in flight, the upload lease
    store: Store
    images: ImageHost
    ledger: QuotaLedger
    cache: ResponseCache
    upstream: Upstream
    upstream_headers: Mapping[str, str]
    background: Detached  # upstream calls whose caller left after dispatch
    admin: AdminOps
    # The cache entry of a request's key material, within the configured scope and for what
    # answers (`cache.entry_key`).
    cache_key: Callable[[Identity, Sequence[str]], str]
    # The `user` value sent upstream for an identity (never the caller's own).
    user_field: Callable[[Identity], str]
    hits_count_against: tuple[Unit, ...]  # the units a cache hit (or a coalesced answer) spends
    on_timeout: OnTimeout  # an answer lost after sending: keep the charge, or refund
    models: tuple[str, ...]  # the models a variations upload may name
    max_image_side: int  # pixel ceiling of an uploaded image
    body_timeout_seconds: float  # the whole upload must arrive within this
    teams: frozenset[str]  # every team the config names (the usage gauge's)
    metrics_token: SecretStr | None  # the bearer /metrics asks for, when set
    multiprocess_dir: str | None  # where the workers' shared metrics live, if several
