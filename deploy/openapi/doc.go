// Package openapi holds the OpenAPI 3.1 description of parley's HTTP API,
// openapi.yaml. Its tests keep the document and the gateway in step: every
// route served is documented, every documented route is served, and the
// examples are what a running parley accepts and answers.
package openapi

import _ "embed"

// Spec is openapi.yaml, for tools that serve or check the document.
//
//go:embed openapi.yaml
var Spec []byte
