"""The Services record: the long-lived parts the request handlers read, in bundles.

`lifespan.py` opens them once per process; the routes find the record at
`request.app.state.services` and hand each part of a request its own bundle (the door its
`Door`, the pipeline its `Metering`), never the whole record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import SecretStr

from gateway.admin.alerting import AlertOps
from gateway.admin.models import ModelAdmin
from gateway.admin.operations import AdminOps
from gateway.auth.base import Identity
from gateway.auth.signin import ConsoleSignIn
from gateway.background import Detached
from gateway.cache import ResponseCache
from gateway.door import Door, RoomCheck
from gateway.notify.sender import Notifier
from gateway.params import ImageLimits
from gateway.quota.ledger import QuotaLedger
from gateway.settings.models import ImagesConfig
from gateway.store.base import Store
from gateway.upstream.base import Operation, Upstream
from gateway.upstream.catalogue import ModelCatalogue
from gateway.upstream.hosting import ImageHost
from gateway.upstream.image_api import ImageApiUpstream
from gateway.vocabulary import OnTimeout, Unit


@dataclass(frozen=True)
class Metering:
    """What the metered pipeline works with: the quota ledger, the answer cache, the calls
    that outlive their callers, and the rules every charge follows."""

    ledger: QuotaLedger
    cache: ResponseCache
    background: Detached  # upstream calls whose caller left after dispatch
    room: RoomCheck  # told of quota refusals: the door checks those callers first
    user_field: Callable[[Identity], str]  # the `user` sent upstream (never the caller's own)
    hits_count_against: tuple[Unit, ...]  # the units a cache hit (or a coalesced answer) spends
    on_timeout: OnTimeout  # an answer lost after sending: keep the charge, or refund
    marks: Mapping[str, str]  # on every metered answer (the sandbox says it answered)


@dataclass(frozen=True)
class Upstreams:
    """The upstream adapters, each serving its operations, the image models they use, and
    the images the gateway serves."""

    adapters: tuple[Upstream, ...]
    images: ImageHost
    catalogue: ModelCatalogue  # the model lists, their prices and availability
    watch_seconds: float  # how often the upstream's /models is read
    image_api: ImageApiUpstream  # generations and edits (also among `adapters`)

    def serving(self, operation: Operation) -> Upstream:
        """The adapter that serves `operation`: the first that names it."""
        for adapter in self.adapters:
            if operation in adapter.operations:
                return adapter
        raise LookupError(f"no upstream adapter serves {operation}")


@dataclass(frozen=True)
class Ops:
    """What the probes and the metrics scrape read."""

    store: Store  # /readyz pings it
    teams: frozenset[str]  # every team the config names (the usage gauge's)
    metrics_token: SecretStr | None  # the bearer /metrics asks for, when set
    multiprocess_dir: str | None  # where the workers' shared metrics live, if several


@dataclass(frozen=True)
class Alerting:
    """Budget alerts: their webhooks and thresholds (admin plane), and their delivery."""

    ops: AlertOps
    notifier: Notifier


@dataclass(frozen=True)
class Services:
    """Everything a request handler needs, built from one `Settings` (which it does not
    hold), in bundles."""

    door: Door  # who gets in: identity, quota room, a place in flight, the upload lease
    metering: Metering  # the pipeline's: quota, cache, calls that outlive their callers
    upstream: Upstreams  # who produces answers, and the image files the gateway serves
    admin: AdminOps  # the admin plane: runtime keys and rules, their store and audit trail
    ops: Ops  # probes and metrics
    limits: ImageLimits  # what an image request may ask: the endpoints' own limits
    alerting: Alerting  # budget alerts: webhooks, thresholds, deliveries
    models: ModelAdmin  # the admin plane's model lists and prices (on `admin`)
    sign_in: ConsoleSignIn | None = None  # the console's SSO sign-in, when configured
    images: ImagesConfig = field(default_factory=ImagesConfig)  # generations and edits
