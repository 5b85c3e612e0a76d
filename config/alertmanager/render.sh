#!/bin/sh
# render.sh TEMPLATE OUTPUT: copy an Alertmanager config, each ${ALERT_...} placeholder
# replaced by that environment variable's value. Alertmanager reads no environment itself,
# and what goes there (a webhook URL with its token, a mail password) is a secret that
# belongs in the environment. Exits 1 naming every placeholder whose variable is unset.
# POSIX sh: runs in the Alertmanager image's busybox and in the deploy tests.
set -eu
template=$1
output=$2
text=$(cat "$template")
for name in $(env | sed -n 's/^\(ALERT_[A-Z0-9_]*\)=.*/\1/p'); do
  # Escape what a sed replacement reads as special: \ & and the | delimiter.
  value=$(printenv "$name" | sed 's/[\\&|]/\\&/g')
  text=$(printf '%s\n' "$text" | sed "s|\\\${$name}|$value|g")
done
missing=$(printf '%s\n' "$text" | grep -o '\${ALERT_[A-Z0-9_]*}' | sort -u | tr '\n' ' ' || true)
if [ -n "$missing" ]; then
  echo "render.sh: $template needs these variables set: $missing" >&2
  exit 1
fi
umask 077
printf '%s\n' "$text" >"$output"
