// Package e2e holds end-to-end tests that build and run the real binaries.
package e2e
