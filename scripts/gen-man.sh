#!/usr/bin/env bash
# gen-man.sh - write the troop(1) man page to stdout, made from the
# program's own --help texts (troop --help, then troop COMMAND --help for
# each command it lists), so that the two never disagree.
#
#   scripts/gen-man.sh path/to/troop > troop.1
set -euo pipefail
troop=${1:?usage: gen-man.sh path/to/troop}
version=$("$troop" --version | awk '{print $2}')
date=${SOURCE_DATE_EPOCH:+$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)}
date=${date:-$(date -u +%Y-%m-%d)}

# roff-escape: backslashes, and a leading dot or quote on a line
esc() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/" -e 's/-/\\-/g'; }

commands=$("$troop" --help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on=0}')

cat <<MAN
.TH TROOP 1 "$date" "troop $version" "Monkey Troop"
.SH NAME
troop \\- Monkey Troop: donate idle GPU time, run LLM inference on the troop's GPUs
.SH SYNOPSIS
.B troop
.I command
.RI [ options ]
.br
.B troop
.BR \\-\\-help " | " \\-\\-version
.SH DESCRIPTION
MAN
"$troop" --help | sed -n '3p' | esc
echo '.PP'
echo 'Every option may also be set with the environment variable shown in brackets;'
echo 'a flag on the command line wins over the environment, which wins over the default.'
echo '.SH COMMANDS'
"$troop" --help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {name=$1; $1=""; sub(/^ +/, ""); printf ".TP\n.B %s\n%s\n", name, $0} on && /^$/ {on=0}' | sed 's/-/\\-/g'
for c in $commands; do
  echo ".SH TROOP $(echo "$c" | tr a-z A-Z)"
  help=$("$troop" "$c" --help)
  # usage line, summary paragraph, then the option table
  echo "$help" | sed -n '1p' | sed 's/^usage: //' | esc | sed 's/^/.B /'
  echo '.PP'
  echo "$help" | awk 'NR > 2 && /^Options:/ {exit} NR > 2 {print}' | esc | sed 's/^$/.PP/'
  echo "$help" | awk '/^Options:/ {on=1; next} on && NF {print}' | while IFS= read -r line; do
    # "  -m, --model MODEL      help..." -> .TP / flags / help
    flags=$(echo "$line" | sed -E 's/^ +//; s/^((-[a-zA-Z], )?--[a-z0-9-]+( [A-Z][A-Z0-9:|_.=-]*)?).*/\1/')
    text=$(echo "$line" | sed -E 's/^ +//; s/^((-[a-zA-Z], )?--[a-z0-9-]+( [A-Z][A-Z0-9:|_.=-]*)?) +//')
    if [ "$flags" = "$(echo "$line" | sed -E 's/^ +//')" ]; then
      echo "$line" | sed -E 's/^ +//' | esc   # a continuation line
      continue
    fi
    echo '.TP'
    echo "$flags" | esc | sed 's/^/.B /'
    echo "$text" | esc
  done
done
cat <<'MAN'
.SH FILES
.TP
.I $TROOP_HOME/identity.key
your identity (account key), created 0600 on first use; TROOP_HOME defaults
to ~/.config/monkey-troop
.TP
.I /etc/troop/*.env
environment files read by the systemd units (troop-coordinator, troop-worker,
troop-up)
.SH SEE ALSO
The project's README.md and docs/ (ARCHITECTURE.md, PROTOCOL.md, DEPLOYMENT.md).
MAN
