#!/usr/bin/env bash
# Centrifugo, the third server of `make bench`, pinned and kept in the tool cache
# (infra/cache-root.sh), never in go.mod:
#
#   centrifugo.sh path      print where the pinned binary is (installed or not)
#   centrifugo.sh install   install it if missing (go install from the module proxy, or
#                           from the module cache when offline); print its path
#   centrifugo.sh version   print the module version the installed binary was built from
#
# loadgen -centrifugo PATH starts it with a configuration of its own (tools/loadgen/centrifugo.go).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULE=github.com/centrifugal/centrifugo/v6
VERSION=v6.9.1
BIN_DIR="$(bash "$ROOT/infra/cache-root.sh")/bin"
BIN="$BIN_DIR/centrifugo@$VERSION"

install() {
	[[ -x "$BIN" ]] && return 0
	mkdir -p "$BIN_DIR"
	# Concurrent installs each build into a directory of their own and rename into place.
	tmp="$(mktemp -d "$BIN_DIR/.install-centrifugo.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	# The release builds set build.Version the same way, so that `centrifugo version` tells it.
	local flags=(-trimpath -ldflags "-X $MODULE/internal/build.Version=${VERSION#v}")
	echo "centrifugo.sh: go install $MODULE@$VERSION (a minute or two, once)" >&2
	if ! (cd "$tmp" && GOBIN="$tmp" GOFLAGS= CGO_ENABLED=0 go install "${flags[@]}" "$MODULE@$VERSION") >&2; then
		# Offline, with the module downloaded before: the module cache is a proxy of its own.
		local dl
		dl="$(go env GOMODCACHE)/cache/download"
		(cd "$tmp" && GOBIN="$tmp" GOFLAGS= CGO_ENABLED=0 GOPROXY="file://$dl" GOSUMDB=off \
			go install "${flags[@]}" "$MODULE@$VERSION") >&2
	fi
	mv -f "$tmp/centrifugo" "$BIN"
}

case "${1:-}" in
path) echo "$BIN" ;;
install)
	install
	echo "$BIN"
	;;
version)
	[[ -x "$BIN" ]] || {
		echo "centrifugo.sh: not installed: $BIN" >&2
		exit 1
	}
	go version -m "$BIN" | awk -v m="$MODULE" '$1 == "mod" && $2 == m { print m "@" $3 }'
	;;
*)
	echo "usage: $0 path|install|version" >&2
	exit 2
	;;
esac
