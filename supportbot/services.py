"""What every session shares: configuration, the catalog, the stores and the client factory.

Built once per app. Everything here is read-only after start-up or safe to share between
threads; nothing a visitor sends is kept here (the cooldown registry holds model ids only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supportbot.agent import Agent
from supportbot.client import ClientFactory
from supportbot.config import Settings
from supportbot.housekeeping import ExportFiles
from supportbot.limits import Budget, budget_for
from supportbot.pricing import Pricing, load_pricing
from supportbot.routing.catalog import Catalog, load_catalog
from supportbot.routing.fallback import Cooldown
from supportbot.routing.router import RoutingPolicy, load_policy, plan_tiers
from supportbot.storage.counters import SpendCounters
from supportbot.storage.db import Database, open_database
from supportbot.storage.history import History
from supportbot.storage.store import Store


@dataclass
class Services:
    """The app's shared, thread-safe parts."""

    settings: Settings
    catalog: Catalog
    policy: RoutingPolicy
    pricing: Pricing
    store: Store
    history: History
    clients: ClientFactory
    agent: Agent
    counters: SpendCounters
    exports: ExportFiles
    database: Database
    # Models that failed lately are tried last (per process; see routing.fallback). Tests pass a clock.
    cooldown: Cooldown = field(default_factory=Cooldown)

    @classmethod
    def create(cls, settings: Settings, engine: Any = None, *, transport: Any = None) -> Services:
        """Load assets, open the database and make the client factory.

        ``engine`` (an offline engine) or ``transport`` (an httpx transport, e.g. a scripted
        model from ``supportbot.testing``) replace the network; by default the settings decide.
        """
        settings.check()
        catalog = load_catalog(settings.catalog_path)
        policy, pricing = load_policy(catalog=catalog), load_pricing()
        # Automatic routes use only what SUPPORTBOT_PLAN includes (a bad plan stops start-up, named).
        catalog = catalog.for_plan(settings.plan, plan_tiers(policy, settings.plan, (p.name for p in pricing.plans)))
        windows = {m.id: m.context_window for m in catalog}
        clients = ClientFactory(settings, engine, context_windows=windows, transport=transport)
        if clients.engine is not None:  # the in-process engine's model list is known without a request
            catalog = catalog.with_service_ids(clients.engine.model_ids)
        # SQLite in the data directory, or the PostgreSQL database every replica shares.
        url = settings.database_url.get_secret_value() if settings.database_url else None
        database = open_database(url, Path(settings.data_dir))
        try:
            store = Store(database)
            history, counters = History(database), SpendCounters(store)
        except BaseException:
            database.close()
            raise
        return cls(
            settings,
            catalog,
            policy,
            pricing,
            store,
            history,
            clients,
            Agent(settings, clients),
            counters,
            ExportFiles(),
            database,
        )

    def close(self) -> None:
        """Close the database connection(s)."""
        self.database.close()

    def budget(self, identity: str) -> Budget:
        """The budget a visitor's turns draw on (see ``supportbot.limits``)."""
        return budget_for(self.settings, self.counters, identity)

    @property
    def offline(self) -> bool:
        """True when no request leaves the process."""
        return self.clients.offline

    @property
    def engine_label(self) -> str:
        """What the header badge says."""
        if self.settings.engine == "replay":
            return f"Replay — {Path(self.settings.cassette_path or '').name}"
        return "Offline demo engine" if self.clients.engine is not None else f"Live — Oxlo at {self.settings.base_url}"

    async def check_catalog(self) -> Catalog:
        """Read the live service's model list into the catalog (unlisted models are flagged, never dropped, and
        automatic routing skips them); ApiError when it cannot be asked, and the catalog stays "not checked"."""
        if self.clients.engine is None and self.settings.engine != "replay":
            self.catalog = self.catalog.with_service_ids(await self.clients.list_models())
        return self.catalog
