// Package testkit is what parley's tests and its tooling share, written
// once: the rule for a test whose servers or programs are missing (skip
// with a reason, fail under CI=true), waiting on a condition instead of
// sleeping, finding the repository, building and launching the parley
// command, reading the end of a log, and a few Redis commands without a
// client library.
//
// Tests and the programs under tools/ import it; the server never does.
package testkit
