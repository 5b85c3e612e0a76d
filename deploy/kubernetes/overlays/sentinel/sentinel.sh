#!/bin/sh
# Starts a Sentinel on a private copy of sentinel.conf (Sentinel rewrites its config as it
# learns the group), watching the primary the other Sentinels name, else the redis-state
# pod that says it is a primary, else $FIRST (a new group). Addresses are host:port; the
# Sentinel announces its stable name ($SELF): pod addresses change on every restart.
set -eu
. "$(dirname "$0")/redis-lib.sh"
primary="$(ask_sentinels "$SELF")"
if [ -z "$primary" ]; then
  for redis in $REDIS_HOSTS; do
    role="$(timeout 3 redis-cli -h "${redis%:*}" -p "${redis##*:}" --raw role 2>/dev/null \
      | head -n 1)" || true
    if [ "$role" = master ]; then primary="$redis"; break; fi
  done
fi
[ -n "$primary" ] || primary="$FIRST"
sed -e "s/^sentinel monitor $SENTINEL_SERVICE [^ ]* [^ ]* /sentinel monitor $SENTINEL_SERVICE ${primary%:*} ${primary##*:} /" \
  "$CONFIG" > "$DATA_DIR/sentinel.conf"
printf 'sentinel announce-ip %s\nsentinel announce-port %s\n' "${SELF%:*}" "${SELF##*:}" \
  >> "$DATA_DIR/sentinel.conf"
echo "sentinel: watching $primary as $SENTINEL_SERVICE"
exec redis-server "$DATA_DIR/sentinel.conf" --sentinel --port "${SELF##*:}"
