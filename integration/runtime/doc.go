// Package runtime holds the end-to-end tests of socikit-snapshotter on real
// components: containerd's snapshotter conformance suite against our
// snapshotter, and containerd (v2.4.2 built by scripts/containerd-build.sh,
// and Debian's 1.6) pulling and running an image from a registry on loopback
// through it. The tests carry the "integration" build tag and need root;
// scripts/test-runtime.sh builds what they need and runs them.
package runtime
