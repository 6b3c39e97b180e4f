#!/bin/sh
# Installs the locked dependencies, builds the package and runs its tests
# against a parley built from this tree (needs Node 20+, npm and Go).
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
npm test
