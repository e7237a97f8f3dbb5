package fs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/log"
	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/socikit/socikit/ztoc"
)

// Reader reads the layer's uncompressed tar stream. remote.Fetcher is one.
// ReadAt returns io.EOF only when the stream ends before len(p) bytes.
type Reader interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
}

// OpaqueXattr names the xattr that marks an opaque directory.
const (
	// TrustedOpaque is what overlayfs reads by default.
	TrustedOpaque = "trusted.overlay.opaque"
	// UserOpaque is what overlayfs reads with the userxattr mount option
	// (rootless).
	UserOpaque = "user.overlay.opaque"
)

// maxHeaderSize bounds the tar header bytes (PAX and long-name headers
// included) read to verify one file.
const maxHeaderSize = 1 << 20

// cacheTimeout is how long the kernel may cache entries and attributes:
// the tree never changes.
const cacheTimeout = time.Hour

// Option configures New.
type Option func(*options) error

type options struct {
	opaque []string
	noSuid bool
	pt     ContentSource // nil: no passthrough
	ptMin  int64
	obs    ReadObserver // nil: none
	ops    *OpCounters  // nil: requests not counted
}

// WithOpaqueXattrs sets the xattrs that mark opaque directories. Default
// TrustedOpaque only.
func WithOpaqueXattrs(names ...string) Option {
	return func(o *options) error {
		for _, n := range names {
			if n != TrustedOpaque && n != UserOpaque {
				return fmt.Errorf("unknown opaque xattr %q", n)
			}
		}
		o.opaque = names
		return nil
	}
}

// WithNoSuid mounts without honouring setuid/setgid bits and device nodes
// (nosuid,nodev). Default: honoured, as a container's root filesystem
// needs them.
func WithNoSuid() Option {
	return func(o *options) error {
		o.noSuid = true
		return nil
	}
}

// ReadObserver is told of the reads the filesystem serves through FUSE
// (start-up profiles, snapshotter/record). Reads the kernel answers from
// its page cache or through passthrough never reach the filesystem.
type ReadObserver interface {
	// ObserveRead is called after a successful read of n bytes at offset
	// off of a regular file: file is the index of its TOC entry in
	// Ztoc.Files (shared by hard links), name that entry's name as the
	// TOC has it. It runs on the read path of every FUSE read: it must be
	// cheap and must not block.
	ObserveRead(file int, name string, off, n int64)
}

// WithReadObserver calls o after each successful FUSE read of a regular
// file. Default: none.
func WithReadObserver(o ReadObserver) Option {
	return func(opts *options) error {
		opts.obs = o
		return nil
	}
}

// FS is the read-only tree of one layer, from its zTOC. File contents come
// from a Reader. It is safe for concurrent use.
type FS struct {
	z      *ztoc.Ztoc
	r      Reader
	o      options
	root   *entry
	hdrOff []int64
	// noXattrs: no entry has an extended attribute, none is an opaque
	// directory (xattrs.go).
	noXattrs bool

	mu      sync.Mutex
	lastErr error
	skipped []string

	// Passthrough (WithPassthrough).
	srv              backingRegistrar // set by Mount before it serves
	probeMu          sync.Mutex
	ptState          atomic.Int32
	ptErr            error // guarded by probeMu
	openMu           sync.Mutex
	opens            map[*entry]*openState
	contentErrLogged atomic.Bool
	stats            stats

	inos inoIndex // LookupNode (resume.go)
}

// New builds the tree of the layer indexed by z, reading file contents
// through r.
func New(z *ztoc.Ztoc, r Reader, opts ...Option) (*FS, error) {
	o := options{opaque: []string{TrustedOpaque}}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.pt != nil && !anyFileOf(z, o.ptMin) {
		// No file passthrough could serve: mount as without it, so that
		// opens need no FUSE request (node.Open) and the mount is not
		// stacked.
		o.pt = nil
	}
	root, skipped, err := buildTree(z)
	if err != nil {
		return nil, fmt.Errorf("build the layer's tree: %w", err)
	}
	return &FS{z: z, r: r, o: o, root: root, hdrOff: headerOffsets(z.Files), skipped: skipped, noXattrs: !anyXattr(root)}, nil
}

// anyFileOf reports whether z has a regular file of at least minSize
// bytes (entries other than regular files have size 0).
func anyFileOf(z *ztoc.Ztoc, minSize int64) bool {
	for i := range z.Files {
		if z.Files[i].UncompressedSize >= minSize {
			return true
		}
	}
	return false
}

// Skipped returns the names of TOC entries left out of the tree (unknown
// types).
func (f *FS) Skipped() []string { return f.skipped }

// Err returns the last error a FUSE operation hit, or nil.
func (f *FS) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// Root returns a new root node, for fusefs.Mount or fusefs.NewNodeFS.
func (f *FS) Root() fusefs.InodeEmbedder { return &node{fs: f, e: f.root} }

// Options returns the go-fuse options Mount uses.
func (f *FS) Options() *fusefs.Options {
	t := cacheTimeout
	flags := uintptr(syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV)
	mopts := []string{"default_permissions"}
	if !f.o.noSuid {
		mopts = append(mopts, "suid", "dev")
	}
	// FUSE_PASSTHROUGH is negotiated only when used: it makes the mount
	// count as stacked (go-fuse's max_stack_depth 1, which keeps an
	// overlayfs over the mount within the kernel's depth of 2, and needs
	// backing files on a filesystem that is not stacked).
	var disabled uint64
	if f.o.pt == nil {
		disabled = fuse.CAP_PASSTHROUGH
	}
	return &fusefs.Options{
		EntryTimeout:    &t,
		AttrTimeout:     &t,
		NegativeTimeout: &t,
		RootStableAttr:  &fusefs.StableAttr{Ino: f.root.ino},
		// Node id = inode number, assigned in TOC order: the same for
		// every server of the layer, so that a restarted daemon serving
		// the kernel's existing mount would answer the ids the kernel
		// holds (docs/snapshotter.md, "Not done yet").
		ExternalNodeID: true,
		// Mode 0 is a real mode here (whiteouts, /etc/shadow): do not
		// let go-fuse turn it into 0644.
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			DirectMountStrict:    true,
			DirectMountFlags:     flags,
			AllowOther:           true,
			FsName:               "socikit",
			Name:                 "socikit",
			Options:              mopts,
			MaxReadAhead:         1 << 20,
			MaxWrite:             1 << 20, // also max_read: fewer, larger FUSE reads
			DisabledCapabilities: disabled,
			// The kernel keeps symlink targets (FUSE_CACHE_SYMLINKS): a
			// path through /lib -> usr/lib cost a READLINK each time.
			EnableSymlinkCaching: true,
		},
	}
}

// Mount mounts the layer at mountpoint (root only: a direct mount, no
// fusermount) and returns once the mount is up.
func (f *FS) Mount(mountpoint string) (*Mount, error) {
	// fusefs.Mount, with the server kept before it serves (passthrough
	// probes through it).
	opts := f.Options()
	s, err := fuse.NewServer(countOps(fusefs.NewNodeFS(f.Root(), opts), f.o.ops), mountpoint, &opts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount layer at %s: %w", mountpoint, err)
	}
	f.srv = s
	go s.Serve()
	if err := s.WaitMount(); err != nil {
		return nil, fmt.Errorf("mount layer at %s: %w", mountpoint, err)
	}
	return &Mount{srv: s, dir: mountpoint}, nil
}

// Mount is a mounted layer.
type Mount struct {
	srv *fuse.Server
	dir string
	gen uint32 // servers of the connection before this one (resume.go)
}

// Dir returns the mountpoint.
func (m *Mount) Dir() string { return m.dir }

// Unmount unmounts the layer and waits for the server to stop. When the
// mount is busy (an overlay still uses it) it is detached (MNT_DETACH):
// the kernel drops it once the last user is gone, and Unmount returns
// without waiting for that.
func (m *Mount) Unmount() error {
	if err := m.srv.Unmount(); err != nil {
		if derr := syscall.Unmount(m.dir, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmount layer at %s: %w", m.dir, errors.Join(err, derr))
		}
		return nil
	}
	m.srv.Wait()
	return nil
}

// fail records err for e and logs it the first time e fails, then returns
// the errno to give the kernel.
func (f *FS) fail(ctx context.Context, e *entry, op string, err error) syscall.Errno {
	if ctx.Err() != nil {
		return syscall.EINTR
	}
	f.mu.Lock()
	f.lastErr = fmt.Errorf("%s inode %d: %w", op, e.ino, err)
	f.mu.Unlock()
	if !e.failed.Swap(true) {
		name := ""
		if e.file >= 0 {
			name = f.z.Files[e.file].Name
		}
		log.G(ctx).WithError(err).WithField("op", op).WithField("file", name).WithField("inode", e.ino).
			Error("layer filesystem: returning EIO")
	}
	return syscall.EIO
}

// verify checks, once per file, that the tar header bytes before the
// file's data match its TOC entry, as upstream SOCI does: a TOC that does
// not describe the blob must not serve data.
func (f *FS) verify(ctx context.Context, e *entry) error {
	_, err := f.verifyRead(ctx, e, nil)
	return err
}

// verifyRead is verify, reading as well the first len(data) bytes of the
// file's data into data when the header is still to be checked: the header
// and the data that follows it then come in one read of the Reader (one
// span-cache pread instead of two, for a small file's only FUSE read).
// It reports whether data was filled. data, when not empty, must be at
// most the file's size.
func (f *FS) verifyRead(ctx context.Context, e *entry, data []byte) (bool, error) {
	if e.verified.Load() {
		return false, nil
	}
	e.verifyMu.Lock()
	defer e.verifyMu.Unlock()
	if e.verified.Load() {
		return false, nil
	}
	fe := &f.z.Files[e.file]
	off := f.hdrOff[e.file]
	n := fe.UncompressedOffset - off
	if n < 512 || n > maxHeaderSize {
		return false, fmt.Errorf("tar header of %q: bad size %d", fe.Name, n)
	}
	buf := make([]byte, n+int64(len(data)))
	if m, err := f.r.ReadAt(ctx, buf, off); m != len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return false, fmt.Errorf("read tar header of %q at %d: %w", fe.Name, off, err)
	}
	br := bytes.NewReader(buf[:n])
	h, err := tar.NewReader(br).Next()
	if err != nil {
		return false, fmt.Errorf("parse tar header of %q at %d: %w", fe.Name, off, err)
	}
	if br.Len() != 0 {
		return false, fmt.Errorf("tar header of %q at %d: %d bytes left over", fe.Name, off, br.Len())
	}
	if err := matchHeader(h, fe); err != nil {
		return false, fmt.Errorf("tar header of %q at %d does not match the toc: %w", fe.Name, off, err)
	}
	e.verified.Store(true)
	copy(data, buf[n:])
	return len(data) > 0, nil
}

func matchHeader(h *tar.Header, fe *ztoc.FileEntry) error {
	switch {
	case h.Name != fe.Name:
		return fmt.Errorf("name %q", h.Name)
	case h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeCont:
		return fmt.Errorf("type %q", h.Typeflag)
	case h.Size != fe.UncompressedSize:
		return fmt.Errorf("size %d", h.Size)
	case h.Mode != fe.Mode:
		return fmt.Errorf("mode %o", h.Mode)
	case uint32(h.Uid) != fe.UID || uint32(h.Gid) != fe.GID:
		return fmt.Errorf("owner %d:%d", h.Uid, h.Gid)
	case !h.ModTime.Equal(fe.ModTime):
		return fmt.Errorf("mtime %v", h.ModTime)
	case h.Linkname != fe.Linkname:
		return fmt.Errorf("linkname %q", h.Linkname)
	}
	return nil
}
