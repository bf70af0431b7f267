"""The services' live figures, as ops commands read them: shadow agreement and drift scores.

``ZOO_METRICS_URL`` names where: one or more services' ``/metrics`` endpoints (comma-separated; their series
are added up), or a Prometheus server (any URL not ending in ``/metrics``), asked through its HTTP API.
Unset: there are no live figures, and the commands say so.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from models.errors import ZooError
from models.settings import Settings

TIMEOUT = 10.0


class LiveUnavailable(ZooError, RuntimeError):
    """The services' metrics could not be read."""


@dataclass(frozen=True)
class Shadow:
    """A challenger's shadow figures against one champion version."""

    task: str
    champion_version: str
    challenger_version: str
    compared: float
    agreement: float | None
    errors: float

    def to_json(self) -> dict[str, Any]:
        return {"champion_version": self.champion_version, "challenger_version": self.challenger_version, "compared": int(self.compared), "agreement": self.agreement, "errors": int(self.errors)}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            return resp.read()
    except OSError as exc:
        raise LiveUnavailable(f"cannot read {url}: {exc}") from exc


def scrape(urls: tuple[str, ...], names: tuple[str, ...], op: str = "sum") -> Samples:
    """The samples of the metrics ``names`` (full sample names, e.g. ``zoo_shadow_requests_total``) of the
    ``/metrics`` at ``urls``, combined over them by ``op`` (``sum`` or ``max``)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for url in urls:
        for family in text_string_to_metric_families(_get(url).decode("utf-8", errors="replace")):
            for sample in family.samples:
                if sample.name in names:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    out[key] = sample.value if key not in out else (out[key] + sample.value if op == "sum" else max(out[key], sample.value))
    return out


def _prometheus(url: str, names: tuple[str, ...], op: str) -> Samples:
    out: Samples = {}
    for name in names:
        query = urllib.parse.urlencode({"query": f"{op} by (task, feature, champion_version, challenger_version) ({name})"})
        body = json.loads(_get(f"{url.rstrip('/')}/api/v1/query?{query}"))
        for item in body.get("data", {}).get("result", []):
            out[(name, tuple(sorted(item["metric"].items())))] = float(item["value"][1])
    return out


def samples(settings: Settings, names: tuple[str, ...], op: str = "sum") -> Samples | None:
    """The current samples of ``names`` from ``ZOO_METRICS_URL``, combined by ``op``; ``None`` when it is not set."""
    urls = settings.loop.metrics_url
    if not urls:
        return None
    if all(u.rstrip("/").endswith("/metrics") for u in urls):
        return scrape(urls, names, op)
    if len(urls) != 1:
        raise LiveUnavailable("ZOO_METRICS_URL: give services' /metrics URLs, or one Prometheus server")
    return _prometheus(urls[0], names, op)


SHADOW_NAMES = ("zoo_shadow_requests_total", "zoo_shadow_agreement_sum", "zoo_shadow_agreement_count", "zoo_shadow_errors_total")


def shadow(settings: Settings, task: str) -> list[Shadow] | None:
    """Every (champion, challenger) pair of ``task`` the services compared; ``None`` without ``ZOO_METRICS_URL``."""
    found = samples(settings, SHADOW_NAMES)
    if found is None:
        return None
    pairs: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (name, labels), value in found.items():
        tags = dict(labels)
        if tags.get("task") == task:
            pairs[(tags.get("champion_version", ""), tags.get("challenger_version", ""))][name] += value
    return [
        Shadow(
            task,
            champion,
            challenger,
            v["zoo_shadow_requests_total"],
            v["zoo_shadow_agreement_sum"] / v["zoo_shadow_agreement_count"] if v["zoo_shadow_agreement_count"] else None,
            v["zoo_shadow_errors_total"],
        )
        for (champion, challenger), v in sorted(pairs.items())
    ]


def drift_scores(settings: Settings) -> dict[tuple[str, str], float] | None:
    """``(task, feature) -> score`` (the largest over the services); ``None`` without ``ZOO_METRICS_URL``."""
    found = samples(settings, ("zoo_drift_score",), op="max")
    if found is None:
        return None
    out: dict[tuple[str, str], float] = {}
    for (_, labels), value in found.items():
        tags = dict(labels)
        key = (tags.get("task", ""), tags.get("feature", ""))
        out[key] = max(out.get(key, value), value)  # other labels (pid) folded
    return out


def attach_shadow(settings: Settings, rows: list[dict[str, Any]]) -> str:
    """Put each task's shadow figures for its challenger against its champion into ``rows`` (``zoo models``);
    returns what the figures are, or why there are none, for the table's caption."""
    if not settings.loop.metrics_url:  # and nothing imported: zoo models stays a light command
        return "shadow: no live figures (set ZOO_METRICS_URL to the services' /metrics or Prometheus)"
    from models.registry import get_serving
    from models.serving import MEASURES

    try:
        for row in rows:
            champ, chall = row.get("champion"), row.get("challenger")
            figures = shadow(settings, row["task"]) if champ and chall else []
            if figures is None:
                return "shadow: no live figures (set ZOO_METRICS_URL to the services' /metrics or Prometheus)"
            mine = [f for f in figures if f.champion_version == str(champ["version"]) and f.challenger_version == str(chall["version"])] if figures else []
            row["shadow"] = {**mine[0].to_json(), "measure": MEASURES[get_serving(row["task"]).shadow_measure][0]} if mine else None
    except LiveUnavailable as exc:
        return f"shadow: {exc}"
    return "shadow: live requests compared, challenger vs champion, in the task's measure"


def shadow_cell(row: dict[str, Any]) -> str:
    s = row.get("shadow")
    if not s:
        return "-"
    agreement = "-" if s["agreement"] is None else f"{s['agreement']:.4g}"
    return f"{s['compared']} req, {s['measure']} {agreement}"
