"""A real Prometheus scrapes a real ``bentoml serve``: every rule and dashboard query runs and names exported metrics.

Needs Debian's ``prometheus`` package (``/usr/bin/prometheus`` and ``/usr/bin/promtool``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipelines.serving import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))
TASKS = ("classify", "recommend")
GRAFANA_VARIABLES = {  # what Grafana substitutes before it sends a query; longest names first
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "${task}": "|".join(TASKS),
    "$task": "|".join(TASKS),
}
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE"}
"""Series Prometheus writes itself: per scrape target, and for alerts."""
LIVE_LOOP = {
    "zoo_shadow_requests_total", "zoo_shadow_agreement_sum", "zoo_shadow_agreement_count", "zoo_canary_requests_total",
    "zoo_canary_rollbacks_total", "zoo_canary_active", "zoo_captured_total", "zoo_drift_score",
}
"""Series a service exports only with a challenger shadowed or canaried, capture on, or drift scored: the session's
service has none, so tests/integration/test_loop.py checks that its services export every one the rules and the
dashboard query."""


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        # make test installs it (infra/tools/system-packages.sh); where it cannot, these tests skip saying so
        pytest.skip(f"{name} not found: install Debian's prometheus package (apt-get install prometheus), which provides prometheus and promtool")
    return path


def promtool(*args: str | Path) -> str:
    proc = subprocess.run([binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# --- what the rules and dashboards ask ------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    """Every rule (alerting and recording) of every rule file."""
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))  # a collapsed row holds its panels


def grafana_expr(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable this test does not substitute: {expr}"
    return expr


def dashboard_targets() -> list[tuple[str, str]]:
    """(``dashboard: panel``, expression with the variables substituted) of every panel target."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in dashboard_panels(board["panels"]):
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", grafana_expr(target["expr"])))
    return found


def dashboard_variables() -> list[tuple[str, str]]:
    """(metric, label) of every ``label_values(metric, label)`` template variable."""
    found = []
    for path in DASHBOARDS:
        for var in json.loads(path.read_text())["templating"]["list"]:
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*(\w+)\s*\)\s*", query)
            assert m, f"{path.name}: variable {var['name']}: only label_values(metric, label) is checked, got {query!r}"
            found.append((m.group(1), m.group(2)))
    return found


PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "atan2", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    PromQL's only bare identifiers are metric names, function and aggregation names (always
    followed by ``(``), keywords, and label names inside ``{...}`` or after ``by``/``on``/...;
    strings, label matchers, ranges, label lists, offsets and numbers are removed first.
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"#[^\n]*", " ", s)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    s = re.sub(r"(?<![\w:.])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)", " ", s)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][\w:]*", s):
        if m.group() in PROMQL_KEYWORDS or s[m.end() :].lstrip().startswith("("):
            continue
        names.add(m.group())
    return names


def test_metric_name_extraction() -> None:
    assert metric_names('sum by (task, le) (rate(a_bucket{task=~"$x|y", le!="1"}[5m])) / on (task) group_left b_total') == {"a_bucket", "b_total"}
    assert metric_names("histogram_quantile(0.99, sum(rate(c:d:rate5m[1m:10s] offset 1h)) by (le)) > 1e3 and bool x") == {"c:d:rate5m", "x"}
    assert metric_names('label_replace(vector(1), "task", "$1", "endpoint", "/(.+)") or absent(up{job="zoo"})') == {"up"}
    assert metric_names("max without (instance) (zoo_model_version) * 0.5 unless ignoring(job) zoo_model_ready == 0") == {"zoo_model_version", "zoo_model_ready"}


def test_every_query_has_a_metric() -> None:
    """Guards the extraction above: an expression without any metric name would escape the export check."""
    exprs = [r["expr"] for r in rules()] + [e for _, e in dashboard_targets()]
    assert RULE_FILES and DASHBOARDS and len(exprs) > 20
    assert [e for e in exprs if not metric_names(e)] == []


def test_promtool_unit_tests() -> None:
    assert RULE_TESTS
    out = promtool("test", "rules", *RULE_TESTS)
    assert "SUCCESS" in out


# --- a service and a Prometheus scraping it -------------------------------------------------------


def send_traffic(url: str, image: bytes) -> None:
    """Good and bad requests to both tasks, unknown ids, and a request to every task route."""
    from services.zoo import Zoo

    with httpx.Client(base_url=url, timeout=60) as c:
        expected = [
            (c.post("/classify", files={"image": ("7.png", image, "image/png")}, data={"k": "2"}), 200),
            (c.post("/classify", files={"image": ("x.png", b"not a png", "image/png")}), 400),
            (c.post("/recommend", json={"user_id": 100, "k": 3}), 200),
            (c.post("/recommend", json={"user_id": 424242, "k": 3}), 200),
            (c.post("/recommend", json={"user_id": "abc"}), 400),
            (c.post("/rate", json={"user_ids": [100, 424242], "movie_ids": [1000, 999_999]}), 200),
            (c.post("/rate", json={"user_ids": [100, 101], "movie_ids": [1000]}), 400),
        ]
        for response, status in expected:
            assert response.status_code == status, f"{response.request.url}: {response.status_code} {response.text}"
        for route in Zoo.inner.routes():
            assert c.post(route, json={}).status_code >= 400


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}\n-> {r.status_code} {body.get('errorType')}: {body.get('error')}"
    return body["data"]["result"]


def wait_for(what: str, check: Any, timeout: float, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (httpx.HTTPError, AssertionError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log and log.exists() else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def service(served: str, mirror: Path) -> tuple[str, bytes]:
    """The session's shared service, with traffic so that every series exists from the first scrape."""
    image = sorted((mirror / "mnist_tiny" / "valid" / "7").glob("*.png"))[0].read_bytes()
    send_traffic(served, image)
    return served, image


@pytest.fixture(scope="module")
def prometheus(service: tuple[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping the service every second and evaluating the rule files every second."""
    exe = binary("prometheus")
    url, image = service
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(path) for path in RULE_FILES],
                "scrape_configs": [
                    {"job_name": "zoo", "static_configs": [{"targets": [url.removeprefix("http://")], "labels": {"service": "zoo"}}]}
                ],
            }
        )
    )
    promtool("check", "config", config)
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    prom = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus to be ready", lambda: httpx.get(f"{prom}/-/ready", timeout=2).status_code == 200, 30, log)
        wait_for("the service target to be up", lambda: [s for s in query(prom, 'up{job="zoo"} == 1')], 30, log)
        time.sleep(2)  # a few scrapes of the first traffic, so that the second shows up in rate()
        send_traffic(url, image)
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_promtool_checks_the_rules_and_the_config() -> None:
    for path in RULE_FILES:
        assert "SUCCESS" in promtool("check", "rules", path)
    assert "SUCCESS" in promtool("check", "config", PROMETHEUS_DIR / "prometheus.yml")


def test_prometheus_evaluates_every_rule(prometheus: str) -> None:
    def evaluated() -> list[dict[str, Any]]:
        loaded = [r for g in httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"] for r in g["rules"]]
        return loaded if all(r["health"] != "unknown" for r in loaded) else []

    loaded = wait_for("every rule to be evaluated once", evaluated, 30)
    assert len(loaded) == len(rules())
    assert [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"] == []
    for rule in rules():
        query(prometheus, rule["expr"])


def test_recording_rules_see_the_traffic(prometheus: str) -> None:
    """Every recording rule has series; routes map to the task the service says they serve."""
    from services.zoo import Zoo

    routes = Zoo.inner.routes()

    def mapping() -> dict[str, str]:
        return {s["metric"]["endpoint"]: s["metric"]["task"] for s in query(prometheus, "zoo:endpoint_task:info")}

    deadline = time.monotonic() + 30
    while mapping() != routes and time.monotonic() < deadline:
        time.sleep(0.5)
    assert mapping() == routes, "every task route needs its line in zoo:endpoint_task:info (infra/prometheus/rules/zoo.rules.yml)"
    wait_for("every recording rule to have series", lambda: all(query(prometheus, name) for name in recorded_names()), 30)
    rejected = wait_for(
        "rejections of both tasks in the share of rejected inputs",
        lambda: {s["metric"]["task"] for s in query(prometheus, "task:zoo_input_rejections:ratio_rate5m > 0")} >= set(TASKS),
        30,
    )
    assert rejected
    unknown = wait_for(
        "unknown user and movie ids in their share",
        lambda: {s["metric"]["field"] for s in query(prometheus, 'task_field:zoo_unknown_inputs:ratio_rate5m{task="recommend"} > 0')}
        == {"user_id", "movie_id"},
        30,
    )
    assert unknown


def test_every_dashboard_query_runs_and_has_data(prometheus: str) -> None:
    targets = dashboard_targets()
    assert targets
    wait_for("every recording rule to have series", lambda: all(query(prometheus, name) for name in recorded_names()), 30)
    empty = [(where, expr) for where, expr in targets if not query(prometheus, expr) and not metric_names(expr) & LIVE_LOOP]
    assert empty == [], "dashboard queries without data although both tasks had traffic"
    for metric, label in dashboard_variables():
        r = httpx.get(f"{prometheus}/api/v1/label/{label}/values", params={"match[]": metric}, timeout=10).json()
        assert r["status"] == "success" and set(TASKS) <= set(r["data"]), (metric, label, r)


def test_every_metric_queried_is_exported(service: tuple[str, bytes]) -> None:
    url, _ = service
    exported = {s.name for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text) for s in family.samples}
    known = exported | recorded_names() | SYNTHETIC | LIVE_LOOP
    used: dict[str, set[str]] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(rule.get("record") or rule["alert"])
    for where, expr in dashboard_targets():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    for metric, _ in dashboard_variables():
        used.setdefault(metric, set()).add("dashboard variable")
    unknown = {name: sorted(places) for name, places in used.items() if name not in known}
    assert unknown == {}, f"queried but not exported by the service (exported: {sorted(exported)})"
    # The names the issue is about are really there:
    assert {"bentoml_service_request_total", "bentoml_service_request_duration_seconds_bucket", "zoo_unknown_inputs_total", "zoo_model_ready"} <= exported
