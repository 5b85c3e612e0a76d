#!/bin/sh
# Starts a redis-state pod: as the replica of the primary the Sentinels name for
# $SENTINEL_SERVICE, or, when no Sentinel answers (a new group), as the primary if it is
# $FIRST and as $FIRST's replica if not. Addresses are host:port; the pod announces its
# stable name ($SELF), which the Sentinels hand to the gateways. Persistence as compose's
# redis-state: append-only, and noeviction under a memory cap below the container's limit,
# so a full Redis refuses writes (503 quota_backend_unavailable) instead of being killed.
# Protected mode is off as the image's entrypoint (not run here) would turn it off: only
# the gateways and the group reach these pods (networkpolicy.yaml).
set -eu
. "$(dirname "$0")/redis-lib.sh"
port="${SELF##*:}"
primary="$(ask_sentinels)"
[ -n "$primary" ] || primary="$FIRST"
set -- redis-server --port "$port" --dir "$DATA_DIR" --protected-mode no \
  --appendonly yes --appendfsync everysec \
  --maxmemory "$MAXMEMORY" --maxmemory-policy noeviction \
  --replica-announce-ip "${SELF%:*}" --replica-announce-port "$port"
if [ "$primary" = "$SELF" ]; then
  echo "redis-state: starting as the primary"
else
  echo "redis-state: starting as a replica of $primary"
  set -- "$@" --replicaof "${primary%:*}" "${primary##*:}"
fi
exec "$@"
