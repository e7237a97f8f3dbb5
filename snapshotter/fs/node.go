package fs

import (
	"context"
	"errors"
	"io"
	"sort"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// blockSize is the block size reported by stat and statfs.
const blockSize = 4096

// node is the go-fuse inode of an entry. Hard links share one node: the
// kernel sees one inode number.
type node struct {
	fusefs.Inode
	fs *FS
	e  *entry
}

// One assertion per capability (stargz fs/layer/node.go does the same).
var (
	_ fusefs.InodeEmbedder      = (*node)(nil)
	_ fusefs.NodeLookuper       = (*node)(nil)
	_ fusefs.NodeReaddirer      = (*node)(nil)
	_ fusefs.NodeGetattrer      = (*node)(nil)
	_ fusefs.NodeOpener         = (*node)(nil)
	_ fusefs.NodeReader         = (*node)(nil)
	_ fusefs.NodeReadlinker     = (*node)(nil)
	_ fusefs.NodeGetxattrer     = (*node)(nil)
	_ fusefs.NodeListxattrer    = (*node)(nil)
	_ fusefs.NodeStatfser       = (*node)(nil)
	_ fusefs.NodeAccesser       = (*node)(nil)
	_ fusefs.NodeOpendirer      = (*node)(nil)
	_ fusefs.NodeSetattrer      = (*node)(nil)
	_ fusefs.NodeSetxattrer     = (*node)(nil)
	_ fusefs.NodeRemovexattrer  = (*node)(nil)
	_ fusefs.NodeFlusher        = (*node)(nil)
	_ fusefs.NodeOpendirHandler = (*node)(nil)
)

func (f *FS) fillAttr(e *entry, out *fuse.Attr) {
	out.Ino = e.ino
	out.Mode = e.mode
	out.Nlink = e.nlink
	out.Uid, out.Gid = e.uid, e.gid
	out.Rdev = e.rdev
	out.Size = uint64(e.size)
	if e.isDir() {
		out.Size = blockSize
	}
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = blockSize
	sec, nsec := uint64(0), uint32(0)
	if !e.mtime.IsZero() && e.mtime.Unix() >= 0 {
		sec, nsec = uint64(e.mtime.Unix()), uint32(e.mtime.Nanosecond())
	}
	out.Mtime, out.Mtimensec = sec, nsec
	out.Atime, out.Atimensec = sec, nsec
	out.Ctime, out.Ctimensec = sec, nsec
}

// Getattr implements fusefs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.fillAttr(n.e, &out.Attr)
	out.SetTimeout(cacheTimeout)
	return 0
}

// Setattr implements fusefs.NodeSetattrer: the layer is read-only.
func (n *node) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Access implements fusefs.NodeAccesser. Permissions are checked by the
// kernel (default_permissions); writes are refused here.
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	if mask&2 != 0 { // W_OK
		return syscall.EROFS
	}
	return 0
}

// Lookup implements fusefs.NodeLookuper.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	c := n.e.child(name)
	if c == nil {
		return nil, syscall.ENOENT
	}
	n.fs.fillAttr(c, &out.Attr)
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
	return n.NewInode(ctx, &node{fs: n.fs, e: c}, fusefs.StableAttr{Mode: c.mode & syscall.S_IFMT, Ino: c.ino}), 0
}

// Opendir implements fusefs.NodeOpendirer.
func (n *node) Opendir(ctx context.Context) syscall.Errno {
	if !n.e.isDir() {
		return syscall.ENOTDIR
	}
	return 0
}

// OpendirHandle implements fusefs.NodeOpendirHandler (go-fuse calls it
// instead of Opendir): the handle lists the directory, and
// FOPEN_CACHE_DIR with FOPEN_KEEP_CACHE lets the kernel keep the listing
// across opens (the tree never changes), so a directory is read through
// FUSE once; later opens cost an OPENDIR and a RELEASEDIR only.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if !n.e.isDir() {
		return nil, 0, syscall.ENOTDIR
	}
	return fusefs.NewListDirStream(n.e.listing()), fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// Readdir implements fusefs.NodeReaddirer.
func (n *node) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if !n.e.isDir() {
		return nil, syscall.ENOTDIR
	}
	return fusefs.NewListDirStream(n.e.listing()), 0
}

// Readlink implements fusefs.NodeReadlinker.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.e.mode&syscall.S_IFMT != syscall.S_IFLNK {
		return nil, syscall.EINVAL
	}
	return []byte(n.e.link), 0
}

// Open implements fusefs.NodeOpener. Reads go to the node; the open
// flags are openFlags. With WithPassthrough, files of at least the
// minimum size get a handle: one offering the kernel a backing file when
// their content is local (go-fuse then drops FOPEN_KEEP_CACHE and sets
// FOPEN_PASSTHROUGH), else one that counts the opens reading through
// FUSE.
//
// Without passthrough, a handle has nothing to carry: Open answers
// ENOSYS, which the kernel takes (its no_open, FUSE_NO_OPEN_SUPPORT) as
// "opens need no request": it sends no OPEN and no RELEASE again on this
// mount and opens every file with FOPEN_KEEP_CACHE, the open answered
// ENOSYS succeeding as well. A small file read through a fresh page cache then costs one
// READ instead of OPEN, READ, RELEASE; a file in the page cache costs no
// request (BenchmarkSmallFile in snapshotter/layer, docs/performance.md).
// Writes never reach Open: the mount is read-only (MS_RDONLY).
func (n *node) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.e.mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, syscall.EINVAL
	}
	if n.fs.o.pt == nil {
		return nil, 0, syscall.ENOSYS
	}
	return n.fs.open(ctx, n.e), openFlags, 0
}

// Flush implements fusefs.NodeFlusher: there is nothing to flush. ENOSYS
// tells the kernel to send no FLUSH again on this mount: opens without an
// OPEN request (see Open) do not carry FOPEN_NOFLUSH, and go-fuse would
// otherwise answer each close's FLUSH.
func (n *node) Flush(ctx context.Context, fh fusefs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// maxMergedRead bounds the data read along with a file's tar header on
// its first read (the two are read into one buffer).
const maxMergedRead = 64 << 10

// openFlags are the flags of every open: the kernel keeps the page cache
// across opens (the data never changes), and does not send a FLUSH at
// each close (FOPEN_NOFLUSH, kernel 5.18 on; older kernels ignore it):
// the tree is read-only and locks are not forwarded, so a flush has
// nothing to do, and the round trip was a quarter of the FUSE requests
// of reading a small file (OPEN, READ, FLUSH, RELEASE).
const openFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH

// Read implements fusefs.NodeReader. The first read of a file verifies
// its tar header against the TOC; any failure is EIO, never wrong data.
func (n *node) Read(ctx context.Context, fh fusefs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.fs.stats.reads.Add(1)
	if _, ok := fh.(*ptHandle); ok {
		n.fs.stats.fallbackReads.Add(1)
	}
	e := n.e
	if e.file < 0 {
		return nil, syscall.EINVAL
	}
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= e.size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	want := min(int64(len(dest)), e.size-off)
	// The first read of a small file from its start reads the header
	// with the data (the header check reads its bytes anyway).
	var first []byte
	if off == 0 && want <= maxMergedRead {
		first = dest[:want]
	}
	fe := &n.fs.z.Files[e.file]
	if done, err := n.fs.verifyRead(ctx, e, first); err != nil {
		return nil, n.fs.fail(ctx, e, "verify", err)
	} else if !done {
		m, err := n.fs.r.ReadAt(ctx, dest[:want], fe.UncompressedOffset+off)
		if int64(m) != want {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, n.fs.fail(ctx, e, "read", err)
		}
	}
	if o := n.fs.o.obs; o != nil {
		o.ObserveRead(e.file, fe.Name, off, want)
	}
	return fuse.ReadResultData(dest[:want]), 0
}

// xattr returns the entry's extended attributes, with the opaque marker.
func (n *node) xattr(name string) ([]byte, bool) {
	if n.e.opaque {
		for _, o := range n.fs.o.opaque {
			if name == o {
				return []byte("y"), true
			}
		}
	}
	v, ok := n.e.xattrs[name]
	return v, ok
}

// Getxattr implements fusefs.NodeGetxattrer. In a layer without any
// extended attribute it answers ENOSYS (xattrs.go).
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.fs.noXattrs {
		return 0, syscall.ENOSYS
	}
	v, ok := n.xattr(attr)
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Listxattr implements fusefs.NodeListxattrer. It answers even in a
// layer without extended attributes (an empty list): ENOSYS would make
// listxattr(2) fail with EOPNOTSUPP on the mount, where containerd's
// unpack lists nothing (xattrs.go).
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var names []string
	for k := range n.e.xattrs {
		names = append(names, k)
	}
	if n.e.opaque {
		for _, o := range n.fs.o.opaque {
			if _, dup := n.e.xattrs[o]; !dup {
				names = append(names, o)
			}
		}
	}
	sort.Strings(names)
	size := 0
	for _, k := range names {
		size += len(k) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	i := 0
	for _, k := range names {
		i += copy(dest[i:], k)
		dest[i] = 0
		i++
	}
	return uint32(size), 0
}

// Setxattr implements fusefs.NodeSetxattrer: the layer is read-only.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// Removexattr implements fusefs.NodeRemovexattrer: the layer is read-only.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.EROFS
}

// Statfs implements fusefs.NodeStatfser.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = blockSize
	out.Frsize = blockSize
	out.Blocks = uint64(n.fs.z.UncompressedArchiveSize+blockSize-1) / blockSize
	out.Files = uint64(len(n.fs.z.Files))
	out.NameLen = 255
	return 0
}
