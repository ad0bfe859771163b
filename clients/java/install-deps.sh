#!/usr/bin/env bash
# Installs what the Java client's build, generate.sh and test suite need: Java 17 and Maven
# (from Debian, only if missing) and every Maven dependency and plugin, including the protoc and
# protoc-gen-grpc-java binaries, into the local Maven repository (~/.m2). Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

missing=()
command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Building, running the gate-free tests and installing resolves (and downloads) every dependency
# and plugin the suite and the README's install line use: protoc and protoc-gen-grpc-java for the
# generated sources, the test libraries, Surefire's JUnit provider (only fetched when a test
# actually runs), and the jar and install plugins. It also installs the client itself into ~/.m2.
mvn -B -q install -Dtest='OccupancyClientUnitTest,FakeOccupancyGateTest' -Dsurefire.failIfNoSpecifiedTests=false
