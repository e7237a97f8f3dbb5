package fs

import (
	"context"
	"reflect"
	"strconv"
	"syscall"
	"testing"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

type readLog []string

func (l *readLog) ObserveRead(file int, name string, off, n int64) {
	*l = append(*l, name+"@"+itoa(off)+"+"+itoa(n)+"#"+itoa(int64(file)))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestReadObserver: each successful read is reported once with the TOC
// entry, the offset and the bytes served (the merged first read included,
// reads past the end clipped or not reported); failed reads are not.
func TestReadObserver(t *testing.T) {
	entries := fstest.Tricky(t.Name(), 1000)
	z, tb := build(t, entries)
	idx := map[string]int{}
	for i, f := range z.Files {
		idx[f.Name] = i
	}
	var log readLog
	_, root := newTestFS(t, &memReader{b: tb}, z, WithReadObserver(&log))
	ctx := context.Background()
	n, _ := walk(t, root, "a/file") // "hello, lazy world\n"
	buf := make([]byte, 100)
	for _, off := range []int64{0, 6, 18, 500} {
		if _, errno := n.Read(ctx, nil, buf, off); errno != 0 {
			t.Fatal(errno)
		}
	}
	i := itoa(int64(idx["a/file"]))
	want := readLog{"a/file@0+18#" + i, "a/file@6+12#" + i}
	if !reflect.DeepEqual(log, want) {
		t.Errorf("observed %q, want %q", log, want)
	}

	log = nil
	_, root = newTestFS(t, failReader{}, z, WithReadObserver(&log))
	n, _ = walk(t, root, "a/file")
	if _, errno := n.Read(ctx, nil, buf, 0); errno != syscall.EIO {
		t.Fatalf("read: %v", errno)
	}
	if len(log) != 0 {
		t.Errorf("failed read observed: %q", log)
	}
}
