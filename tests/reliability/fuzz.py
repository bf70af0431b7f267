"""Property-based fuzzing of the all-tasks service from its own OpenAPI schema, with Schemathesis.

Every operation of ``/docs.json`` (the seven task APIs and feedback, the Open
Inference Protocol's ``/v2`` routes, health, metrics) gets
generated requests, valid and invalid (``--max-examples`` per operation in the
fuzzing phase, plus Schemathesis's coverage cases and a probe of the methods
an operation does not allow). A run fails on any 5xx, on a response that breaks
the schema the service declares for its status (body, content type, headers,
status code), and on a server that is not ready afterwards.

Not checked: that every schema-valid request is accepted (an OpenAPI schema
cannot say "a decodable image" or "as many movie ids as user ids"; those get a
400 with a message) and that every schema-violating one is refused (pydantic
takes ``true`` for the integer 1).

    make fuzz               # after make demo: 500 per operation, seed 0; bench/results/fuzz.{json,md}
    FUZZ_EXAMPLES=50 make fuzz
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"


def fuzz(url: str, max_examples: int, seed: int, workers: int = 1) -> dict[str, Any]:
    """Run Schemathesis against the service at ``url``; the counts per operation, the failures, and readiness after.

    One worker: with two, Hypothesis's ``ast.parse`` in two threads at once sometimes failed inside CPython 3.11
    (``SystemError: AST constructor recursion depth mismatch``, python/cpython#106905), aborting operations' coverage phase.
    """
    st = Path(sys.executable).with_name("st")
    with tempfile.TemporaryDirectory() as tmp:
        har, report = Path(tmp) / "run.har", Path(tmp) / "run.json"
        cmd = [
            str(st), "run", f"{url}/docs.json", "--checks", CHECKS, "--max-examples", str(max_examples), "--seed", str(seed),
            "--workers", str(workers), "--request-timeout", "120", "--no-color", "--generation-database", "none",
            "--report", "har,json", "--report-har-path", str(har), "--report-json-path", str(report),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=6 * 3600)
        if not report.is_file():
            raise RuntimeError(f"schemathesis wrote no report (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        summary = json.loads(report.read_text())
        entries = json.loads(har.read_text())["log"]["entries"]
    declared = json.loads(urllib.request.urlopen(f"{url}/docs.json", timeout=30).read())["paths"]
    operations = {(m.upper(), p) for p, ops in declared.items() for m in ops}
    templates = [(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"), p) for p in declared]
    templates.sort(key=lambda t: "{" in t[1])  # a literal path before a template that also matches it

    def operation(e: dict[str, Any]) -> tuple[str, str]:
        """(method, declared path) of a request: ``/v2/models/recommend/infer`` is ``/v2/models/{task}/infer``."""
        path = urlparse(e["request"]["url"]).path
        return e["request"]["method"], next((p for rx, p in templates if rx.match(path)), path)

    sent = Counter(operation(e) for e in entries)
    statuses: dict[str, Counter[int]] = {}
    for e in entries:
        key = operation(e)
        if key in operations:
            statuses.setdefault(f"{key[0]} {key[1]}", Counter())[e["response"]["status"]] += 1
    with urllib.request.urlopen(f"{url}/readyz", timeout=30) as resp:
        ready = resp.status == 200
    return {
        "seed": seed,
        "max_examples": max_examples,
        "checks": CHECKS.split(","),
        "exit_code": summary["exit_code"],
        "generated": summary["test_cases"]["generated"],
        "per_operation": {f"{m} {p}": sent[(m, p)] for m, p in sorted(operations)},
        "other_methods": sum(n for k, n in sent.items() if k not in operations),
        "statuses": {op: dict(sorted(c.items())) for op, c in sorted(statuses.items())},
        "failures": summary["failures"],
        "errors": summary["errors"],
        "ready_after": ready,
        "output_tail": done.stdout[-4000:],
    }


def markdown(result: dict[str, Any], stamp_md: str) -> str:
    lines = [
        "# Fuzzing the all-tasks service (Schemathesis, from its OpenAPI schema)",
        "",
        stamp_md,
        f"Seed {result['seed']}, up to {result['max_examples']} fuzzed cases per operation plus coverage cases; "
        f"checks: {', '.join(result['checks'])}. {result['generated']} test cases, "
        f"{len(result['failures'])} failures, {len(result['errors'])} errors; ready afterwards: {result['ready_after']}. "
        f"Requests with methods the operations do not allow (answered 405): {result['other_methods']}.",
        "",
        "| operation | requests | statuses |",
        "| --- | --- | --- |",
    ]
    for op, n in result["per_operation"].items():
        codes = ", ".join(f"{code}: {k}" for code, k in result["statuses"].get(op, {}).items())
        lines.append(f"| `{op}` | {n} | {codes} |")
    lines.append("")
    lines.append("Operations without inputs (health, metrics) have nothing to vary: a few requests each.")
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.common import stamp, stamp_markdown, write_results
    from models.settings import Settings
    from pipelines.serving import running_server

    examples, seed = int(os.environ.get("FUZZ_EXAMPLES", "500")), int(os.environ.get("FUZZ_SEED", "0"))
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory() as tmp, running_server(settings, log=Path(tmp) / "serve.log") as url:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/readyz", timeout=5).status == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            raise SystemExit(f"the service did not become ready (run make demo first):\n{(Path(tmp) / 'serve.log').read_text()[-3000:]}")
        result = fuzz(url, examples, seed)
    result["stamp"] = stamp()
    _, md = write_results("fuzz", result, markdown(result, stamp_markdown(result["stamp"])))
    print(md.read_text())
    if result["failures"] or result["errors"] or not result["ready_after"] or result["exit_code"] != 0:
        print(result["output_tail"])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
