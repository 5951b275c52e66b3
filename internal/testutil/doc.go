// Package testutil holds what several packages' tests need alike: a
// goroutine-safe output buffer, the policy for tools a machine may lack, the
// repository's root and tool cache, the API Gateway and function URL events
// with what the webhook function must answer to each, and the WCAG contrast
// ratio. Import it from _test.go files (and test-only packages such as
// dynamotest) only.
package testutil
