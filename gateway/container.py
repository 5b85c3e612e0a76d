"""The long-lived parts a request handler reads, as one record: `services.py` builds it in the
app's lifespan and the routes find it at `request.app.state.services`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.admin_ops import AdminOps
from gateway.admission import Admission, Doorstep, RoomCheck
from gateway.auth.authenticator import Authenticator, pseudonym
from gateway.auth.identity import Identity
from gateway.background import Detached
from gateway.budget import ImageShelf, UploadBudget
from gateway.cache import ResponseCache, cache_key
from gateway.ledger import QuotaLedger
from gateway.settings import Settings
from gateway.store.base import Store
from gateway.upstream.base import Upstream, VariationRequest
from gateway.upstream.hosting import ImageHost


@dataclass(frozen=True)
class Services:
    """Everything a request handler needs, built from one `Settings`."""

    settings: Settings
    auth: Authenticator
    store: Store
    images: ImageHost
    ledger: QuotaLedger
    cache: ResponseCache
    upstream: Upstream
    upstream_headers: Mapping[str, str]
    admission: Admission
    uploads: UploadBudget
    background: Detached  # upstream calls whose caller left after dispatch
    admin: AdminOps
    doorstep: Doorstep
    room: RoomCheck
    shelf: ImageShelf

    def cache_key(self, identity: Identity, request: VariationRequest) -> str:
        """The cache entry of this request, within the configured scope."""
        return cache_key(self.settings.config.cache, identity, request, self.upstream.identity)

    def user_field(self, identity: Identity) -> str:
        """The `user` value sent upstream for this identity (never the caller's own)."""
        if self.settings.config.identity.user_field == "plain":
            return identity.user
        return pseudonym(self.settings.user_secret.get_secret_value(), identity.user)
