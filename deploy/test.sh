#!/usr/bin/env bash
# `make test`: start a fresh real Kafka broker on its own port and data folder, run the whole
# suite against it, stop the broker whatever happened, and exit with pytest's status
# (pytest exits 5 when it collected no tests: that fails too). ADMUSE_TEST_KAFKA_PORT,
# ADMUSE_TEST_KAFKA_CONTROLLER_PORT and ADMUSE_TEST_KAFKA_DATA_DIR put a second run's broker
# beside the first.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ADMUSE_VENV:-$repo/.venv}"
cd "$repo"

export ADMUSE_KAFKA_PORT="${ADMUSE_TEST_KAFKA_PORT:-19092}"
export ADMUSE_KAFKA_CONTROLLER_PORT="${ADMUSE_TEST_KAFKA_CONTROLLER_PORT:-19093}"
export ADMUSE_KAFKA_DATA_DIR="${ADMUSE_TEST_KAFKA_DATA_DIR:-$repo/.run/kafka-test}"
export ADMUSE_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$ADMUSE_KAFKA_PORT"
export PYTHON="$venv/bin/python"
export PATH="$venv/bin:$PATH"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

deploy/kafka/kafka.sh down >/dev/null 2>&1 || true
rm -rf "$ADMUSE_KAFKA_DATA_DIR"
deploy/kafka/kafka.sh up || exit 1
trap 'deploy/kafka/kafka.sh down' EXIT

# A hung test fails after 10 minutes instead of eating CI's 90.
"$venv/bin/python" -m pytest --timeout=600 "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "test.sh: pytest collected no tests — that is a failure" >&2; fi
exit $rc
