#!/bin/sh
# Installs the locked dependencies, builds the package, checks that the
# browser build the chat page serves (app/gateway/web/sdk) is the build of
# src as it stands, and runs the tests against a parley built from this tree
# (needs Node 20+, npm and Go).
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build

web=$(mktemp -d)
trap 'rm -rf "$web"' EXIT
npx tsc -p tsconfig.web.json --outDir "$web"
if ! diff -r "$web" ../../app/gateway/web/sdk >&2; then
	echo "app/gateway/web/sdk is not the browser build of clients/ts/src: run 'make web' and commit it" >&2
	exit 1
fi

npm test
