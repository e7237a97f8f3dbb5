// Package interop holds socikit's interoperability tests against the real
// upstream AWS SOCI zTOC implementation (github.com/awslabs/soci-snapshotter).
//
// The tests and benchmarks need cgo and zlib and are built only with the
// "integration" build tag; run them with scripts/test-interop.sh.
package interop
