//go:build race

package proxy_test

// raceBuild reports a build with the race detector, which makes the long
// tests run fewer queries.
const raceBuild = true
