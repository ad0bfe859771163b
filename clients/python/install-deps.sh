#!/usr/bin/env bash
# Installs what the Python client's tests and generate.sh need into the
# machine's python3 (CI machines are throwaway, so no virtualenv): the pinned
# grpcio-tools and this package in editable mode with its test extra.
# Idempotent and non-interactive; callable from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

# Single source of truth for the generator version: generate.sh.
tools_version="$(sed -n 's/^GRPCIO_TOOLS_VERSION="\([^"]*\)".*/\1/p' "$here/generate.sh")"
if [[ -z "$tools_version" ]]; then
  echo "install-deps.sh: could not read GRPCIO_TOOLS_VERSION from generate.sh" >&2
  exit 1
fi

# Debian's own python3 is "externally managed" (PEP 668); this is a throwaway
# machine, so allow installing into it. Older pips ignore the variable.
export PIP_BREAK_SYSTEM_PACKAGES=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export PIP_ROOT_USER_ACTION=ignore

if ! "$python" -m pip --version >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-pip || { apt-get update -q && apt-get install -y -q python3-pip; }
  else
    echo "install-deps.sh: $python has no pip and apt-get is unavailable" >&2
    exit 1
  fi
fi

# setuptools >= 77 reads the SPDX licence expression in pyproject.toml; the
# packaging test builds a wheel with it, without build isolation.
"$python" -m pip install -q "setuptools>=77" "grpcio-tools==$tools_version" -e "$here[test]"
"$python" -c 'import occupancy_client, occupancy_client.aio, grpc_tools, pytest' 
echo "install-deps.sh: python client dependencies installed (grpcio-tools $tools_version)"
