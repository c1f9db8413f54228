#!/usr/bin/env bash
# SQL validation speed: the time `sql_query` spends validating one statement (parse, check the
# policy, print back) for a short, a typical analytic (~1 KB), a long (~8 KB) and a deeply
# nested (50 subqueries) query, in each dialect: p50 and p99 of 2,001 runs, one thread.
#
#   bench/sql.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "## SQL validation (cargo bench -p warden-tools --bench validate)"
cargo bench --quiet -p warden-tools --bench validate 2>/dev/null | grep '^|'
