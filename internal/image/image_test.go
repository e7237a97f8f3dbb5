package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParseRef(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "lay")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tarFile := filepath.Join(tmp, "img.tar")
	if err := os.WriteFile(tarFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dg := digest.FromString("x")
	for _, tc := range []struct {
		in   string
		want string // Ref.String()
		kind Kind
	}{
		{dir, "oci-layout:" + dir, KindLayout},
		{dir + ":v1", "oci-layout:" + dir + ":v1", KindLayout},
		{dir + "@" + dg.String(), "oci-layout:" + dir + "@" + dg.String(), KindLayout},
		{tarFile, "oci-archive:" + tarFile, KindArchive},
		{tarFile + ":latest", "oci-archive:" + tarFile + ":latest", KindArchive},
		{"oci-layout:new/dir:tag", "oci-layout:new/dir:tag", KindLayout},
		{"oci-archive:new.tar", "oci-archive:new.tar", KindArchive},
		{"./not/yet", "oci-layout:./not/yet", KindLayout},
		{"out.tar", "oci-archive:out.tar", KindArchive},
		{"localhost:5000/repo:tag", "localhost:5000/repo:tag", KindRegistry},
		{"example.com/a/b@" + dg.String(), "example.com/a/b@" + dg.String(), KindRegistry},
		{"busybox", "busybox", KindRegistry},
	} {
		r, err := ParseRef(tc.in, false)
		if err != nil {
			t.Errorf("ParseRef(%q): %v", tc.in, err)
			continue
		}
		if r.Kind != tc.kind || r.String() != tc.want {
			t.Errorf("ParseRef(%q) = %v %q, want %v %q", tc.in, r.Kind, r.String(), tc.kind, tc.want)
		}
	}
	for _, bad := range []string{"", "oci-layout:", "oci-layout:x@sha256:zz", "UPPER/case"} {
		if _, err := ParseRef(bad, false); err == nil {
			t.Errorf("ParseRef(%q) succeeded", bad)
		}
	}
}

func TestLayoutResolve(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	put := func(body, tag string) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(body), Size: int64(len(body))}
		if err := l.PutManifest(ctx, d, []byte(body), tag); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := put(`{"schemaVersion":2,"a":1}`, "a")
	// One image: it is the default.
	if d, _, err := l.Resolve(ctx); err != nil || d.Digest != a.Digest {
		t.Fatalf("single image: %v %v", d, err)
	}
	b := put(`{"schemaVersion":2,"b":1}`, "latest")
	put(`{"schemaVersion":2,"c":1}`, "c")
	if d, _, err := l.Resolve(ctx); err != nil || d.Digest != b.Digest {
		t.Fatalf("latest: %v %v", d, err)
	}
	// Re-tagging replaces the entry.
	a2 := put(`{"schemaVersion":2,"a":2}`, "a")
	sel, _ := OpenLayout(dir, "a", "")
	if d, _, err := sel.Resolve(ctx); err != nil || d.Digest != a2.Digest {
		t.Fatalf("tag a: %v %v", d, err)
	}
	idx, _ := l.Index()
	if len(idx.Manifests) != 3 {
		t.Errorf("index.json has %d entries, want 3", len(idx.Manifests))
	}
	// By digest, even one index.json does not list.
	sel, _ = OpenLayout(dir, "", a.Digest)
	if d, _, err := sel.Resolve(ctx); err != nil || d.Digest != a.Digest {
		t.Fatalf("by digest: %v %v", d, err)
	}
	sel, _ = OpenLayout(dir, "nope", "")
	if _, _, err := sel.Resolve(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tag: %v", err)
	}
	// A corrupt blob is caught.
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", b.Digest.Encoded()), []byte(`{"schemaVersion":2,"b":9}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Resolve(ctx); err == nil {
		t.Error("corrupt manifest read without error")
	}
}

func TestLayoutWriteBlobVerifies(t *testing.T) {
	ctx := context.Background()
	l, err := CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := ocispec.Descriptor{Digest: digest.FromString("right"), Size: 5}
	err = l.WriteBlob(ctx, d, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("wrong")), nil })
	if err == nil {
		t.Fatal("wrong content written without error")
	}
	if _, err := os.Stat(filepath.Join(l.Dir(), "blobs", "sha256", d.Digest.Encoded())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed write left a blob: %v", err)
	}
	calls := 0
	open := func(context.Context) (io.ReadCloser, error) {
		calls++
		return io.NopCloser(strings.NewReader("right")), nil
	}
	for range 2 {
		if err := l.WriteBlob(ctx, d, open); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Errorf("blob opened %d times, want once (then found present)", calls)
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	var tars [][]byte
	for _, n := range []string{"a.tar", "b.tar"} {
		file := filepath.Join(tmp, n)
		a, err := CreateArchive(file)
		if err != nil {
			t.Fatal(err)
		}
		body := `{"schemaVersion":2}`
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(body), Size: int64(len(body))}
		if err := a.PutManifest(ctx, d, []byte(body), "latest"); err != nil {
			t.Fatal(err)
		}
		if err := a.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		a.Close()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		tars = append(tars, b)
		src, err := OpenArchive(file, "", "")
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := src.Resolve(ctx)
		src.Close()
		if err != nil || got.Digest != d.Digest {
			t.Fatalf("read back: %v %v", got, err)
		}
	}
	if !bytes.Equal(tars[0], tars[1]) {
		t.Error("the same layout gave different tars")
	}
}
