package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// listTree returns every path under dir with the content of files.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		s := strings.TrimPrefix(p, dir)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += "=" + digest.FromBytes(b).String()
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func writeTestBlob(t *testing.T, l *Layout, body string) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromString(body), Size: int64(len(body))}
	if err := l.WriteBlob(context.Background(), d, bytesOpener([]byte(body))); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestLayoutAbort: Abort removes a layout CreateLayout created (and the
// directories made for it), and puts an existing one back as it was at the
// last Commit; a failed blob write leaves nothing.
func TestLayoutAbort(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "layout")
	l, err := CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := writeTestBlob(t, l, "one")
	if err := l.PutManifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("{}"), Size: 2}, []byte("{}"), "x"); err != nil {
		t.Fatal(err)
	}
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s/a left behind: %v", root, err)
	}

	// An existing layout: what was committed stays, the rest goes.
	l, err = CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	d = writeTestBlob(t, l, "one")
	if err := l.PutManifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("{}"), Size: 2}, []byte("{}"), "x"); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	committed := listTree(t, dir)
	l2, err := CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeTestBlob(t, l2, "one") // already there: kept
	writeTestBlob(t, l2, "two")
	if err := l2.PutManifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("{ }"), Size: 3}, []byte("{ }"), "x"); err != nil {
		t.Fatal(err)
	}
	bad := ocispec.Descriptor{Digest: digest.FromString("three"), Size: 5}
	err = l2.WriteBlob(ctx, bad, func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader([]byte("thref"))), nil
	})
	if err == nil {
		t.Fatal("a blob with the wrong content was written")
	}
	if listTree(t, dir) == committed {
		t.Fatal("the second writer changed nothing: the test tests nothing")
	}
	if err := l2.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, dir); got != committed {
		t.Errorf("after Abort:\n%s\nwant:\n%s", got, committed)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", d.Digest.Encoded())); err != nil {
		t.Errorf("committed blob: %v", err)
	}
	// A source has nothing to undo.
	src, err := OpenLayout(dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Abort(); err != nil || listTree(t, dir) != committed {
		t.Errorf("Abort of a source: %v", err)
	}
}
