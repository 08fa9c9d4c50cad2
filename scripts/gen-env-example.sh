#!/usr/bin/env bash
# gen-env-example.sh - write an example environment file for one troop
# command (what the systemd units read from /etc/troop/COMMAND.env), made
# from `troop COMMAND --help`: every option that has a variable, commented
# out, with its help text and default.
#
#   scripts/gen-env-example.sh path/to/troop worker > worker.env
set -euo pipefail
troop=${1:?usage: gen-env-example.sh path/to/troop COMMAND}
cmd=${2:?usage: gen-env-example.sh path/to/troop COMMAND}
echo "# /etc/troop/$cmd.env - settings for 'troop $cmd' when it runs as the"
echo "# troop-$cmd systemd unit (generated from 'troop $cmd --help')."
echo "# Uncomment a line to change it; a flag in the unit's ExecStart wins."
"$troop" "$cmd" --help | awk '/^Options:/ {on=1; next} on' | while IFS= read -r line; do
  case $line in *"[env: "*) ;; *) continue ;; esac
  var=$(echo "$line" | sed -E 's/.*\[env: ([A-Z0-9_]+).*/\1/')
  def=$(echo "$line" | sed -nE 's/.*\[default: ([^]]*)\].*/\1/p')
  text=$(echo "$line" | sed -E 's/^ +(-[a-zA-Z], )?--[a-z0-9-]+( [A-Z][A-Z0-9:|_.=-]*)? +//; s/ \[(default|env): [^]]*\]//g')
  flag=$(echo "$line" | grep -oE -- '--[a-z0-9-]+' | head -1)
  echo
  echo "# $flag: $text"
  echo "#$var=$def"
done
