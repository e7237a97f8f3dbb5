package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Archive is an OCI layout tar, read by extracting it into a temporary
// directory and written by filling one and then tarring it.
type Archive struct {
	*Layout
	file   string
	tmp    string
	target bool
}

// OpenArchive extracts the OCI layout tar file into a temporary directory
// and opens it as a Source. tag and dg select the image as for OpenLayout.
func OpenArchive(file, tag string, dg digest.Digest) (*Archive, error) {
	tmp, err := os.MkdirTemp("", "socikit-oci-")
	if err != nil {
		return nil, err
	}
	if err := extractFile(file, tmp); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	l, err := OpenLayout(tmp, tag, dg)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("open OCI archive %s: %w", file, err)
	}
	return &Archive{Layout: l, file: file, tmp: tmp}, nil
}

// CreateArchive opens the OCI layout tar file as a Target. An existing file
// is extracted first, so its other images are kept. Nothing is written to
// file until Commit.
func CreateArchive(file string) (*Archive, error) {
	tmp, err := os.MkdirTemp("", "socikit-oci-")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(file); err == nil {
		if err := extractFile(file, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
	}
	l, err := CreateLayout(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &Archive{Layout: l, file: file, tmp: tmp, target: true}, nil
}

// Commit writes the tar file (for a target): entries sorted by name, times
// zeroed, owner root, modes 0755 and 0644, so the same layout always gives
// the same bytes. The file is replaced atomically.
func (a *Archive) Commit(ctx context.Context) error {
	if !a.target {
		return nil
	}
	if err := writeFileAtomic(a.file, tarReader(a.tmp)); err != nil {
		return fmt.Errorf("write OCI archive %s: %w", a.file, err)
	}
	return nil
}

// Close removes the temporary directory.
func (a *Archive) Close() error { return os.RemoveAll(a.tmp) }

func tarReader(dir string) io.Reader {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, dir)) }()
	return pr
}

func writeTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0).UTC()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		if strings.HasPrefix(path.Base(name), ".tmp-") {
			return nil
		}
		hdr := &tar.Header{Name: name, ModTime: epoch, Format: tar.FormatPAX, Uname: "", Gname: ""}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
			return tw.WriteHeader(hdr)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, fi.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return fmt.Errorf("%s: not a regular file or directory", name)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// extractFile extracts the regular files and directories of a tar file into
// dir, rejecting names that would land outside it.
func extractFile(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open OCI archive: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read OCI archive %s: %w", file, err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." {
			continue
		}
		if !fs.ValidPath(name) {
			return fmt.Errorf("read OCI archive %s: entry %q escapes the layout", file, hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return fmt.Errorf("extract %s from %s: %w", hdr.Name, file, err)
			}
			if err := out.Close(); err != nil {
				return err
			}
		default:
			// Links and devices have no place in an OCI layout.
			return fmt.Errorf("read OCI archive %s: entry %q has unsupported type %q", file, hdr.Name, hdr.Typeflag)
		}
	}
}
