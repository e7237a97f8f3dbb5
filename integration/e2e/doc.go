// Package e2e holds socikit's end-to-end tests on real components: our
// buildkitd (built by scripts/buildkit-build.sh), buildctl, runc and an
// in-process registry with the referrers API. The tests carry the
// integration build tag; run them with scripts/test-e2e.sh.
package e2e
