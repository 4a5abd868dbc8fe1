#!/bin/sh
# Run a command (as root) in a private mount namespace where /root may be searched by
# other users: for a host whose Python lives in root's 0700 home (pyenv), so the
# components' own uids can run it (minikern/domain.py, "unreachable").  Nothing changes
# outside the namespace: /root is covered by a 0711 tmpfs holding its entries bound back.
#   usage: tools/open_root_home.sh COMMAND [ARG...]
set -eu
[ "$(id -u)" = 0 ] || { echo "$0: run as root" >&2; exit 2; }
exec unshare --mount --propagation private sh -c '
    old=$(mktemp -d /tmp/root-home.XXXXXX)
    mount --bind /root "$old"
    mount -t tmpfs -o mode=0711 tmpfs /root
    for e in "$old"/* "$old"/.[!.]*; do
        [ -e "$e" ] || continue
        n=/root/$(basename "$e")
        if [ -d "$e" ]; then mkdir "$n"; else touch "$n"; fi
        mount --bind "$e" "$n"
    done
    exec "$@"' sh "$@"
