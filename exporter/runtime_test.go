package exporter

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/socikit/socikit/ztoc"
)

// TestRuntimeFiles: with a start-up list, the files the container runtime
// reads before the app (/etc/passwd, /etc/group) go first in a reordered
// layer and are prefetched, and a layer without them reports nothing
// missing for them; without a list nothing changes.
func TestRuntimeFiles(t *testing.T) {
	entries := append(sampleEntries(),
		tarEntry{name: "etc/passwd", size: 900},
		tarEntry{name: "etc/group", size: 400},
		tarEntry{name: "usr/share/filler", size: 3 << 20},
	)
	in := makeTar(t, entries)
	build := func(t *testing.T, in []byte, opts ...Option) *LayerResult {
		t.Helper()
		var blob bytes.Buffer
		res, err := BuildLayer(context.Background(), &blob, bytes.NewReader(in), int64(len(in)), append([]Option{WithSpanSize(1 << 20)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	inSpan := func(res *LayerResult, name string) bool {
		ix, err := ztoc.NewIndex(res.Ztoc)
		if err != nil {
			t.Fatal(err)
		}
		e := res.Ztoc.Lookup(name)
		if e == nil {
			t.Fatalf("%s not in the layer", name)
		}
		first, last := ix.SpansOf(e.UncompressedOffset, max(e.UncompressedSize, 1))
		for _, p := range res.Prefetch {
			if p.StartSpan <= int32(first) && int32(last) <= p.EndSpan {
				return true
			}
		}
		return false
	}

	res := build(t, in, WithStartupFiles([]string{"bin/sh"}), WithReorder(true))
	for _, n := range []string{"etc/passwd", "etc/group", "bin/sh"} {
		if !slices.Contains(res.Reordered, n) {
			t.Errorf("reordered %v: %s not moved", res.Reordered, n)
		}
	}
	first := func(res *LayerResult, names ...string) {
		t.Helper()
		pos := map[string]int64{}
		for _, n := range append(names, "usr/share/filler") {
			pos[n] = res.Ztoc.Lookup(n).UncompressedOffset
		}
		for _, n := range names {
			if pos[n] > pos["usr/share/filler"] {
				t.Errorf("%s after usr/share/filler: not moved to the front", n)
			}
		}
	}
	first(res, "etc/passwd", "etc/group", "bin/sh")
	for _, n := range []string{"etc/passwd", "etc/group", "bin/sh"} {
		if !inSpan(res, n) {
			t.Errorf("%s not prefetched", n)
		}
	}
	if len(res.Missing) != 0 {
		t.Errorf("missing %v", res.Missing)
	}

	// A layer without them: nothing missing, nothing else changes.
	var without []tarEntry
	for _, e := range entries {
		if e.name != "etc/passwd" && e.name != "etc/group" {
			without = append(without, e)
		}
	}
	res = build(t, makeTar(t, without), WithStartupFiles([]string{"bin/sh", "gone"}))
	if !slices.Equal(res.Missing, []string{"gone"}) {
		t.Errorf("missing %v, want [gone]", res.Missing)
	}

	// No list: the runtime files are not prefetched.
	res = build(t, in)
	if len(res.Prefetch) != 0 {
		t.Errorf("prefetch %v without a start-up list", res.Prefetch)
	}
}
