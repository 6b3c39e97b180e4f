// Package pagetest holds the browser test of the chat page that parley serves
// at /. The test builds the parley command, runs it over a real daprd sidecar
// (sidecar/bin/daprd, built by `make sidecar`) and drives two signed-in pages
// in headless Chromium. It has no code besides its tests.
package pagetest
