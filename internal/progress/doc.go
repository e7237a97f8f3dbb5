// Package progress shows the progress of long CLI work (socikit convert,
// socikit pull): a bar per item (vbauerster/mpb) when the output is a
// terminal, plain lines otherwise (what scripts and tests see), or
// nothing but warnings (Quiet).
package progress
