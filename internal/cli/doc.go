// Package cli implements the socikit command line: convert (index an image
// and write it as a SOCI-enabled image), inspect (describe an image's SOCI
// index) and get-file (read one file through a zTOC with range reads).
//
// cmd/socikit only sets up signals and calls [Run]; everything else lives
// here so it can be tested in-process.
package cli
