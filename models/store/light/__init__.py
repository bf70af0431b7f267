"""The registry operations of the ops commands (``zoo models``, ``history``, ``rollback``), without importing MLflow.

Importing MLflow takes about four seconds; an operator's ``zoo models`` should
answer at once. What those commands need (a version behind an alias, its tags,
its run's metrics, moving an alias, tagging a version, the audit runs) is a
handful of calls, made here by one of three stores behind one interface:

* :class:`~models.store.light.rest.RestStore` for an MLflow server
  (``http(s)://``): MLflow's documented REST API, with MLflow's own
  authentication variables;
* :class:`~models.store.light.sqlite.SqliteStore` for the embedded default
  (``sqlite:///``): MLflow's own tables, only at a schema revision this code
  was tested against (:data:`~models.store.light.sqlite.KNOWN_REVISIONS`);
* :class:`~models.store.light.client.ClientStore`, MLflow's client, for every
  other store or schema.

Everything else (training runs, registering, downloading artifacts) goes
through MLflow's client in :mod:`models.store`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from models.errors import NotFound, ZooError
from models.settings import Settings


class RegistryError(ZooError):
    """The tracking server or registry refused a call or could not be reached (the text says which)."""


@dataclass(frozen=True)
class Version:
    """One registered model version, as the ops commands read it."""

    name: str
    version: str
    run_id: str | None
    tags: dict[str, str]
    created_ms: int


class Store(Protocol):
    """The registry calls the ops commands make; each store implements all of them."""

    def by_alias(self, name: str, alias: str) -> Version | None:
        """The version behind ``alias`` of ``name``, or ``None`` when the model or the alias does not exist."""
        ...

    def version(self, name: str, version: str) -> Version:
        """One version; :class:`~models.errors.NotFound` when it does not exist."""
        ...

    def metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric of run ``run_id``."""
        ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    def delete_alias(self, name: str, alias: str) -> None: ...

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None: ...

    def tagged_runs(self, experiment: str, key: str, value: str) -> list[dict[str, str]]:
        """The tags of every active run of ``experiment`` tagged ``key=value``, oldest first (none when it does not exist)."""
        ...

    def log_run(self, experiment: str, run_name: str, tags: Mapping[str, str]) -> None:
        """Record a finished run holding ``tags`` in ``experiment`` (created when missing)."""
        ...


def connect(settings: Settings, uri: str) -> Store:
    """The store for the tracking or registry URI ``uri``: REST for a server, SQLite for the embedded default, else MLflow's client."""
    if uri.startswith(("http://", "https://")):
        from models.store.light.rest import RestStore

        return RestStore(uri)
    if uri.startswith("sqlite:///"):
        from models.store.light.sqlite import SqliteStore

        store = SqliteStore.open(settings, uri)
        if store is not None:
            return store
    from models.store.light.client import ClientStore

    return ClientStore(settings, uri)


__all__ = ["NotFound", "RegistryError", "Store", "Version", "connect"]
