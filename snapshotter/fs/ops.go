package fs

import (
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Op is a kind of FUSE request.
type Op int

// The kinds of FUSE requests counted (WithOpCounters). A read-only mount
// gets the ones before OpOther; OpOther counts the rest (writes, creates,
// locks, ioctls), which the kernel should not send.
const (
	OpLookup Op = iota
	OpForget    // one per node forgotten (a BATCH_FORGET counts each node)
	OpGetattr
	OpSetattr
	OpReadlink
	OpAccess
	OpOpen
	OpRead
	OpLseek
	OpFlush
	OpRelease
	OpOpendir
	OpReaddir
	OpReaddirplus
	OpReleasedir
	OpGetxattr
	OpListxattr
	OpStatfs
	OpStatx
	OpOther
	// NumOps is the number of kinds.
	NumOps
)

var opNames = [NumOps]string{
	"lookup", "forget", "getattr", "setattr", "readlink", "access", "open", "read", "lseek", "flush", "release",
	"opendir", "readdir", "readdirplus", "releasedir", "getxattr", "listxattr", "statfs", "statx", "other",
}

// String returns the kind's name in lower case ("lookup", "readdirplus").
func (o Op) String() string {
	if o < 0 || o >= NumOps {
		return "unknown"
	}
	return opNames[o]
}

// OpBuckets are the upper bounds of the latency histogram of each kind
// (OpStat.Buckets): a request answered from memory takes microseconds, a
// read that waits for a span fetch milliseconds to seconds.
var OpBuckets = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

const numBuckets = len(OpBuckets)

// OpCounters counts FUSE requests by kind with their latency, as the
// filesystem saw them (from go-fuse calling it to its answer; the kernel's
// queueing and the reply's write are not in it). Its zero value is ready;
// it is safe for concurrent use and costs two clock reads and three atomic
// adds per request, no lock. One OpCounters may serve many mounts.
type OpCounters struct {
	ops [NumOps]opCounter
}

type opCounter struct {
	n, nanos atomic.Int64
	buckets  [numBuckets + 1]atomic.Int64 // the last: above every bound
}

// OpStat is one kind's figures.
type OpStat struct {
	Count int64
	Total time.Duration // summed latency
	// Buckets[i] counts the requests that took at most OpBuckets[i] and
	// more than OpBuckets[i-1] (not cumulative); the last element counts
	// those above every bound.
	Buckets [numBuckets + 1]int64
}

// done records a request of kind op that started at start.
func (c *OpCounters) done(op Op, start time.Time) { c.Observe(op, time.Since(start)) }

// Observe records a request of kind op that took d (the mounts record
// theirs; Observe is for tests and other callers).
func (c *OpCounters) Observe(op Op, d time.Duration) {
	o := &c.ops[op]
	o.n.Add(1)
	o.nanos.Add(int64(d))
	i := 0
	for i < numBuckets && d > OpBuckets[i] {
		i++
	}
	o.buckets[i].Add(1)
}

// Stat returns the figures of kind op. Under concurrent requests the
// fields may be a request apart.
func (c *OpCounters) Stat(op Op) OpStat {
	o := &c.ops[op]
	s := OpStat{Count: o.n.Load(), Total: time.Duration(o.nanos.Load())}
	for i := range o.buckets {
		s.Buckets[i] = o.buckets[i].Load()
	}
	return s
}

// Count returns the number of requests of kind op.
func (c *OpCounters) Count(op Op) int64 { return c.ops[op].n.Load() }

// WithOpCounters counts the mount's FUSE requests in c (which may be
// shared with other mounts). Default: not counted.
func WithOpCounters(c *OpCounters) Option {
	return func(o *options) error {
		o.ops = c
		return nil
	}
}

// countingFS is a fuse.RawFileSystem that counts the requests it passes
// on to the one it wraps. Methods without a request (String, SetDebug,
// Init, OnUnmount) come from the embedded one.
type countingFS struct {
	fuse.RawFileSystem
	c *OpCounters
}

// countOps wraps raw so that its requests are counted in c (nil: raw
// itself).
func countOps(raw fuse.RawFileSystem, c *OpCounters) fuse.RawFileSystem {
	if c == nil {
		return raw
	}
	return &countingFS{RawFileSystem: raw, c: c}
}

func (w *countingFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer w.c.done(OpLookup, time.Now())
	return w.RawFileSystem.Lookup(cancel, h, name, out)
}

func (w *countingFS) Forget(nodeid, nlookup uint64) {
	defer w.c.done(OpForget, time.Now())
	w.RawFileSystem.Forget(nodeid, nlookup)
}

func (w *countingFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer w.c.done(OpGetattr, time.Now())
	return w.RawFileSystem.GetAttr(cancel, in, out)
}

func (w *countingFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer w.c.done(OpSetattr, time.Now())
	return w.RawFileSystem.SetAttr(cancel, in, out)
}

func (w *countingFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	defer w.c.done(OpReadlink, time.Now())
	return w.RawFileSystem.Readlink(cancel, h)
}

func (w *countingFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	defer w.c.done(OpAccess, time.Now())
	return w.RawFileSystem.Access(cancel, in)
}

func (w *countingFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer w.c.done(OpOpen, time.Now())
	return w.RawFileSystem.Open(cancel, in, out)
}

func (w *countingFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer w.c.done(OpRead, time.Now())
	return w.RawFileSystem.Read(cancel, in, buf)
}

func (w *countingFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	defer w.c.done(OpLseek, time.Now())
	return w.RawFileSystem.Lseek(cancel, in, out)
}

func (w *countingFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	defer w.c.done(OpFlush, time.Now())
	return w.RawFileSystem.Flush(cancel, in)
}

func (w *countingFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	defer w.c.done(OpRelease, time.Now())
	w.RawFileSystem.Release(cancel, in)
}

func (w *countingFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer w.c.done(OpOpendir, time.Now())
	return w.RawFileSystem.OpenDir(cancel, in, out)
}

func (w *countingFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer w.c.done(OpReaddir, time.Now())
	return w.RawFileSystem.ReadDir(cancel, in, out)
}

func (w *countingFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer w.c.done(OpReaddirplus, time.Now())
	return w.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (w *countingFS) ReleaseDir(in *fuse.ReleaseIn) {
	defer w.c.done(OpReleasedir, time.Now())
	w.RawFileSystem.ReleaseDir(in)
}

func (w *countingFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	defer w.c.done(OpGetxattr, time.Now())
	return w.RawFileSystem.GetXAttr(cancel, h, attr, dest)
}

func (w *countingFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	defer w.c.done(OpListxattr, time.Now())
	return w.RawFileSystem.ListXAttr(cancel, h, dest)
}

func (w *countingFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	defer w.c.done(OpStatfs, time.Now())
	return w.RawFileSystem.StatFs(cancel, h, out)
}

func (w *countingFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	defer w.c.done(OpStatx, time.Now())
	return w.RawFileSystem.Statx(cancel, in, out)
}

// The requests a read-only mount should not get: OpOther.

func (w *countingFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Mknod(cancel, in, name, out)
}

func (w *countingFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (w *countingFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Unlink(cancel, h, name)
}

func (w *countingFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Rmdir(cancel, h, name)
}

func (w *countingFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (w *countingFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Link(cancel, in, name, out)
}

func (w *countingFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, pointedTo, linkName string, out *fuse.EntryOut) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Symlink(cancel, h, pointedTo, linkName, out)
}

func (w *countingFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (w *countingFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.RemoveXAttr(cancel, h, attr)
}

func (w *countingFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Create(cancel, in, name, out)
}

func (w *countingFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Tmpfile(cancel, in, out)
}

func (w *countingFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.GetLk(cancel, in, out)
}

func (w *countingFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.SetLk(cancel, in)
}

func (w *countingFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.SetLkw(cancel, in)
}

func (w *countingFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Write(cancel, in, data)
}

func (w *countingFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Writev(cancel, in, data)
}

func (w *countingFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.CopyFileRange(cancel, in)
}

func (w *countingFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Ioctl(cancel, in, inbuf, out, outbuf)
}

func (w *countingFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Fsync(cancel, in)
}

func (w *countingFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.Fallocate(cancel, in)
}

func (w *countingFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer w.c.done(OpOther, time.Now())
	return w.RawFileSystem.FsyncDir(cancel, in)
}
