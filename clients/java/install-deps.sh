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

# Building and running the gate-free unit tests resolves (and downloads) every dependency and
# plugin the suite uses: protoc and protoc-gen-grpc-java for the generated sources, the test
# libraries, and Surefire's JUnit provider (only fetched when a test actually runs).
mvn -B -q test -Dtest=OccupancyClientUnitTest
