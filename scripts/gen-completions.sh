#!/usr/bin/env bash
# gen-completions.sh - write shell completions for troop to stdout, made
# from the program's own --help texts (its commands, and each command's
# flags), so that they follow the options as they change.
#
#   scripts/gen-completions.sh path/to/troop bash > troop.bash
#   scripts/gen-completions.sh path/to/troop zsh  > _troop
set -euo pipefail
troop=${1:?usage: gen-completions.sh path/to/troop bash|zsh}
shell=${2:?usage: gen-completions.sh path/to/troop bash|zsh}
commands=$("$troop" --help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on=0}')
flags_of() {
  "$troop" "$1" --help | awk '/^Options:/ {on=1; next} on' |
    grep -oE '^ +(-[a-zA-Z], )?--[a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+' | tr '\n' ' '
}

case "$shell" in
bash)
  echo '# bash completion for troop (generated from troop --help)'
  echo '_troop() {'
  echo '  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]:-} words'
  echo '  if [ "$COMP_CWORD" -eq 1 ]; then'
  echo "    COMPREPLY=(\$(compgen -W '$(echo $commands) --help --version' -- \"\$cur\"))"
  echo '    return'
  echo '  fi'
  echo '  case $cmd in'
  for c in $commands; do
    echo "    $c) words='$(flags_of "$c")' ;;"
  done
  echo '    *) return ;;'
  echo '  esac'
  echo '  case $cur in'
  echo '    -*) COMPREPLY=($(compgen -W "$words" -- "$cur")) ;;'
  echo '    *) COMPREPLY=($(compgen -f -- "$cur")) ;;'
  echo '  esac'
  echo '}'
  echo 'complete -F _troop troop'
  ;;
zsh)
  echo '#compdef troop'
  echo '# zsh completion for troop (generated from troop --help)'
  echo '_troop() {'
  echo '  local -a commands'
  echo '  commands=('
  "$troop" --help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {name=$1; $1=""; sub(/^ +/, ""); gsub(/'"'"'/, "'"'\\\\''"'"); printf "    '"'"'%s:%s'"'"'\n", name, $0} on && /^$/ {on=0}'
  echo '  )'
  echo '  if (( CURRENT == 2 )); then'
  echo "    _describe 'command' commands"
  echo '    return'
  echo '  fi'
  echo '  case ${words[2]} in'
  for c in $commands; do
    echo "    $c) compadd -- $(flags_of "$c") ;;"
  done
  echo '  esac'
  echo '}'
  echo '_troop "$@"'
  ;;
*) echo "gen-completions.sh: shell must be bash or zsh" >&2; exit 2 ;;
esac
