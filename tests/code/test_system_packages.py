"""infra/tools/system-packages.sh: `make demo` and `make test` started side by side install the Debian packages once.

A fake ``apt-get`` (and ``id``, saying root) on PATH: installing takes a moment and leaves the command behind,
and fails, as dpkg does, when another install holds the lock.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "infra" / "tools" / "system-packages.sh"

FAKE_APT = """#!/usr/bin/env bash
set -e
[ "$1" = -o ] && shift 2
[ "$1" = update ] && exit 0
mkdir "{root}/dpkg.lock" 2>/dev/null || {{ echo "E: Could not get lock /var/lib/dpkg/lock-frontend" >&2; exit 100; }}
echo install >> "{root}/installs"
sleep 1
printf '#!/bin/sh\\n' > "{root}/bin/fakecmd" && chmod +x "{root}/bin/fakecmd"
rmdir "{root}/dpkg.lock"
"""


def _fake_tools(root: Path) -> dict[str, str]:
    (root / "bin").mkdir()
    (root / "tools").mkdir()
    apt = root / "tools" / "apt-get"
    apt.write_text(FAKE_APT.format(root=root))
    ident = root / "tools" / "id"
    ident.write_text("#!/bin/sh\necho 0\n")
    for tool in (apt, ident):
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{root / 'tools'}:{root / 'bin'}:{os.environ['PATH']}", "TMPDIR": str(root)}


def test_two_runs_side_by_side_install_once_and_both_succeed(tmp_path: Path) -> None:
    env = _fake_tools(tmp_path)
    runs = [
        subprocess.Popen(["bash", str(SCRIPT), "fakecmd:fake-package"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert (tmp_path / "installs").read_text().splitlines() == ["install"]
    assert (tmp_path / "bin" / "fakecmd").exists()


def test_a_command_already_on_path_installs_nothing(tmp_path: Path) -> None:
    env = _fake_tools(tmp_path)
    result = subprocess.run(["bash", str(SCRIPT), "bash:bash"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "installs").exists()
