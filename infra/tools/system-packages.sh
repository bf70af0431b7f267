#!/usr/bin/env bash
# Install the Debian packages whose commands `make test`, `make bench` and `make demo` use, when missing.
#
#   infra/tools/system-packages.sh prometheus:prometheus promtool:prometheus wrk:wrk npm:npm
#
# Each argument is COMMAND:PACKAGE. Commands already on PATH are left alone. The rest are installed
# with apt-get, as root or through passwordless sudo, with one line saying what is installed. Where
# that is not possible (no apt-get, or neither root nor sudo), it says exactly what to install and
# exits 0: the tests that need those commands then skip with the same reason.
set -euo pipefail

missing_cmds=()
packages=()
for pair in "$@"; do
  cmd="${pair%%:*}"
  pkg="${pair#*:}"
  command -v "$cmd" >/dev/null 2>&1 && continue
  missing_cmds+=("$cmd")
  case " ${packages[*]-} " in *" $pkg "*) ;; *) packages+=("$pkg") ;; esac
done
[ "${#packages[@]}" -eq 0 ] && exit 0

what="Debian packages ${packages[*]} (for ${missing_cmds[*]})"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system packages: apt-get not found; install the $what with your package manager. Until then the tests that need them skip, and make bench needs wrk." >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "system packages: not root and no passwordless sudo; run: sudo apt-get install -y ${packages[*]}. Until then the tests that need them skip, and make bench needs wrk." >&2
  exit 0
fi

# `make demo` and `make test` started side by side both get here: one installs while the other waits for it
# (flock on our own lock file), then finds the commands on PATH. apt-get itself waits up to 10 minutes for a
# dpkg or package-list lock another program holds, instead of failing at once.
if [ -z "${ZOO_SYSTEM_PACKAGES_LOCKED-}" ] && command -v flock >/dev/null 2>&1; then
  lock="${TMPDIR:-/tmp}/course-zoo-system-packages.lock"
  exec env ZOO_SYSTEM_PACKAGES_LOCKED=1 flock --timeout 900 "$lock" bash "$0" "$@"
fi
apt_wait=(-o DPkg::Lock::Timeout=600)
echo "system packages: installing the $what with apt-get"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_wait[@]}" update -qq >/dev/null
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_wait[@]}" install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
for cmd in "${missing_cmds[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "system packages: apt-get installed ${packages[*]} but $cmd is still not on PATH" >&2
    exit 1
  fi
done
