package fs

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/containerd/log"
	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// DefaultPassthroughMinSize is the smallest regular file WithPassthrough
// serves through FUSE passthrough when given 0: below it a file is read in
// one or a few FUSE requests and a second copy on disk is not worth it.
const DefaultPassthroughMinSize = 1 << 20

// ContentSource gives local files holding the data of the layer's regular
// files, for FUSE passthrough. The layer package implements it over the
// span cache.
type ContentSource interface {
	// Local reports whether bytes [off, off+n) of the layer's uncompressed
	// tar stream can be read without fetching.
	Local(off, n int64) bool
	// Content returns a read-only regular file holding exactly bytes
	// [off, off+n) of the stream, or nil and no error when those bytes
	// are not all local. The bytes must be ones that were verified against
	// the zTOC. The caller closes the file.
	Content(ctx context.Context, off, n int64) (*os.File, error)
}

// WithPassthrough serves regular files of at least minSize bytes (0:
// DefaultPassthroughMinSize) through FUSE passthrough once src has their
// content locally: the kernel then reads the local file itself, without a
// FUSE request per read. A file is opened in passthrough mode when all its
// data is local (src.Content makes the local file at that first open) and
// no open handle of it reads through FUSE; otherwise it reads through FUSE
// as without this option. Where the kernel refuses passthrough (no
// CAP_SYS_ADMIN, kernel before 6.9, content files on a stacked filesystem
// such as overlayfs) every file reads through FUSE. Default: no
// passthrough, and the mount does not negotiate it with the kernel.
func WithPassthrough(src ContentSource, minSize int64) Option {
	return func(o *options) error {
		if src == nil {
			return fmt.Errorf("passthrough: no content source")
		}
		if minSize < 0 {
			return fmt.Errorf("passthrough minimum size %d is negative", minSize)
		}
		if minSize == 0 {
			minSize = DefaultPassthroughMinSize
		}
		o.pt, o.ptMin = src, minSize
		return nil
	}
}

// Stats counts what the filesystem served. All counts are since New.
type Stats struct {
	// Reads counts FUSE read requests.
	Reads int64
	// PassthroughOpens counts opens answered with a backing file: the
	// kernel reads those files without asking us.
	PassthroughOpens int64
	// FUSEOpens counts opens of files passthrough could serve (size at
	// least the minimum) that read through FUSE: data not all local yet,
	// another open reading through FUSE, or passthrough unavailable.
	FUSEOpens int64
	// FallbackReads counts FUSE reads of handles given a backing file: the
	// kernel did not take it (they are served as any read).
	FallbackReads int64
	// ContentErrors counts failures to make or open a content file (the
	// open then reads through FUSE).
	ContentErrors int64
}

type stats struct {
	reads, ptOpens, fuseOpens, fallbackReads, contentErrors atomic.Int64
}

// Stats returns the filesystem's counters.
func (f *FS) Stats() Stats {
	return Stats{
		Reads:            f.stats.reads.Load(),
		PassthroughOpens: f.stats.ptOpens.Load(),
		FUSEOpens:        f.stats.fuseOpens.Load(),
		FallbackReads:    f.stats.fallbackReads.Load(),
		ContentErrors:    f.stats.contentErrors.Load(),
	}
}

// PassthroughErr returns why the kernel refused passthrough on this mount,
// or nil (passthrough works, is not configured, or was not tried yet).
func (f *FS) PassthroughErr() error {
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	return f.ptErr
}

// Passthrough availability, probed with the first content file.
const (
	ptUnknown int32 = iota
	ptOK
	ptUnavailable
)

// backingRegistrar is the part of fuse.Server the probe uses.
type backingRegistrar interface {
	RegisterBackingFd(*fuse.BackingMap) (int32, syscall.Errno)
	UnregisterBackingFd(int32) syscall.Errno
}

// warnOnce logs the first mount of the process on which passthrough is
// unavailable at warning level, later ones at debug level.
var warnOnce atomic.Bool

// probe reports whether the kernel accepts cf as a backing file, asking it
// once per mount: go-fuse gives up passthrough for the whole mount
// silently after one refusal, and a file handle offering a backing file
// must then not be counted as passthrough. Without a server (the tree is
// driven by NewNodeFS in tests) the answer is yes.
func (f *FS) probe(ctx context.Context, cf *os.File) bool {
	switch f.ptState.Load() {
	case ptOK:
		return true
	case ptUnavailable:
		return false
	}
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	switch f.ptState.Load() {
	case ptOK:
		return true
	case ptUnavailable:
		return false
	}
	if f.srv == nil {
		f.ptState.Store(ptOK)
		return true
	}
	id, errno := f.srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(cf.Fd())})
	if errno != 0 {
		f.ptErr = fmt.Errorf("kernel refused backing file %s: %w", cf.Name(), errno)
		f.ptState.Store(ptUnavailable)
		l := log.G(ctx).WithError(f.ptErr)
		if !warnOnce.Swap(true) {
			l.Warn("layer filesystem: FUSE passthrough unavailable (EPERM: no CAP_SYS_ADMIN or kernel without it; ELOOP: span cache on a stacked filesystem); reading through FUSE")
		} else {
			l.Debug("layer filesystem: FUSE passthrough unavailable")
		}
		return false
	}
	// The probe's backing id: registering it was the test. An error here
	// (the kernel forgot it already) changes nothing.
	_ = f.srv.UnregisterBackingFd(id)
	f.ptState.Store(ptOK)
	return true
}

// openState is the open handles of one file passthrough could serve. The
// kernel fails an open (EIO) that asks for passthrough while the inode has
// files open reading through FUSE (with their page cache), and the
// reverse, so every open of an inode must be of the kind already open.
// The counts drop when go-fuse hands us the release, after the kernel has
// dropped its own, so they never undercount the kernel's.
type openState struct {
	mu   sync.Mutex
	fuse int      // open handles reading through FUSE
	pt   int      // open handles given the backing file
	file *os.File // the content file, while pt > 0
}

func (f *FS) openState(e *entry) *openState {
	f.openMu.Lock()
	defer f.openMu.Unlock()
	st := f.opens[e]
	if st == nil {
		if f.opens == nil {
			f.opens = make(map[*entry]*openState)
		}
		st = &openState{}
		f.opens[e] = st
	}
	return st
}

// fuseHandle is an open file reading through FUSE.
type fuseHandle struct {
	fs *FS
	st *openState
}

// ptHandle is an open file whose reads the kernel does from file.
type ptHandle struct {
	fs   *FS
	st   *openState
	file *os.File
}

var (
	_ fusefs.FileReleaser        = (*fuseHandle)(nil)
	_ fusefs.FileReleaser        = (*ptHandle)(nil)
	_ fusefs.FilePassthroughFder = (*ptHandle)(nil)
)

// PassthroughFd implements fusefs.FilePassthroughFder. go-fuse registers
// the descriptor with the kernel (which takes its own reference) at the
// first passthrough open of the inode and reuses it for later ones.
func (h *ptHandle) PassthroughFd() (int, bool) { return int(h.file.Fd()), true }

// Release implements fusefs.FileReleaser.
func (h *ptHandle) Release(ctx context.Context) syscall.Errno {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	h.st.pt--
	if h.st.pt == 0 {
		h.st.file.Close()
		h.st.file = nil
	}
	return 0
}

// Release implements fusefs.FileReleaser.
func (h *fuseHandle) Release(ctx context.Context) syscall.Errno {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	h.st.fuse--
	return 0
}

// open returns the file handle of an open of e: nil when passthrough does
// not apply to e, a ptHandle when the kernel can read e's content file
// itself, else a fuseHandle.
func (f *FS) open(ctx context.Context, e *entry) fusefs.FileHandle {
	if f.o.pt == nil || e.file < 0 || e.size < f.o.ptMin {
		return nil
	}
	st := f.openState(e)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pt > 0 {
		f.stats.ptOpens.Add(1)
		st.pt++
		return &ptHandle{fs: f, st: st, file: st.file}
	}
	if st.fuse == 0 && f.ptState.Load() != ptUnavailable {
		if cf := f.content(ctx, e); cf != nil {
			f.stats.ptOpens.Add(1)
			st.pt, st.file = 1, cf
			return &ptHandle{fs: f, st: st, file: cf}
		}
	}
	f.stats.fuseOpens.Add(1)
	st.fuse++
	return &fuseHandle{fs: f, st: st}
}

// content returns e's content file if all its bytes are local, its tar
// header checks out, and the kernel takes backing files; else nil. It
// never fetches.
func (f *FS) content(ctx context.Context, e *entry) *os.File {
	fe := &f.z.Files[e.file]
	if !e.verified.Load() {
		// The header is checked before any byte is served, passthrough or
		// not; a failure is left for the reads to report.
		hdr := f.hdrOff[e.file]
		if !f.o.pt.Local(hdr, fe.UncompressedOffset-hdr) || f.verify(ctx, e) != nil {
			return nil
		}
	}
	cf, err := f.o.pt.Content(ctx, fe.UncompressedOffset, e.size)
	if err != nil {
		if ctx.Err() != nil { // the open was interrupted
			return nil
		}
		f.stats.contentErrors.Add(1)
		if !f.contentErrLogged.Swap(true) {
			log.G(ctx).WithError(err).WithField("file", fe.Name).Warn("layer filesystem: no content file for passthrough; reading through FUSE")
		}
		return nil
	}
	if cf == nil {
		return nil
	}
	if !f.probe(ctx, cf) {
		cf.Close()
		return nil
	}
	return cf
}
