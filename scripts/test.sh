#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Docker: set-up
# (scripts/setup.sh), then every unit and integration test against the real
# Docker engine, real restic and real PostgreSQL. Nothing is skipped: a
# missing engine, tool or image fails the run.
set -euo pipefail
cd "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/.."

scripts/setup.sh
cargo test --locked --all-targets
