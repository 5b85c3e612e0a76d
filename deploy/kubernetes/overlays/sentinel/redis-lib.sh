# Shared by redis-state.sh and sentinel.sh (sourced). Addresses are host:port.

# The primary (host:port) the first Sentinel of $SENTINELS that knows $SENTINEL_SERVICE
# names, skipping the address $1; nothing if none answers.
ask_sentinels() {
  for sentinel in $SENTINELS; do
    [ "$sentinel" = "${1:-}" ] && continue
    answer="$(timeout 3 redis-cli -h "${sentinel%:*}" -p "${sentinel##*:}" --raw \
      sentinel get-master-addr-by-name "$SENTINEL_SERVICE" 2>/dev/null)" || continue
    host="$(printf '%s\n' "$answer" | sed -n 1p)"
    port="$(printf '%s\n' "$answer" | sed -n 2p)"
    if [ -n "$host" ] && [ -n "$port" ]; then
      echo "$host:$port"
      return
    fi
  done
}
