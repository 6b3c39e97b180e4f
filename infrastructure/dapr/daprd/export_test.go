package daprd

// Hint is hint, for the external tests.
var Hint = hint
