package trace

import (
	"encoding/binary"
	"strconv"

	"golang.org/x/sys/unix"
)

// kind is what the tracer does with a system call.
type kind uint8

const (
	kNone        kind = iota
	kRead             // read, readv(fd, ...): offset = fd position after - n
	kPread            // pread64, preadv(fd, buf, n, off): offset argument
	kPreadv2          // preadv2(fd, iov, cnt, off, _, flags): off, or the position if off is -1
	kSendfile         // sendfile(out, in, *off, n): *off after - n, or in's position - n
	kCopyIn           // copy_file_range, splice(in, *off_in, ...): likewise
	kOpen             // open, openat, ...: returns a new descriptor, maybe of a file
	kNewFD            // returns a new file descriptor (dup2, socket, ...)
	kFcntl            // fcntl: F_DUPFD and F_DUPFD_CLOEXEC return a new descriptor
	kClose            // close(fd)
	kCloseRange       // close_range(first, last, flags)
	kFDsInMemory      // pipe, socketpair, recvmsg: new descriptors written to memory
	kExec             // execve, execveat: sample the old image at entry
	kExitGroup        // exit_group: sample the process at entry
	kExit             // exit: sample the process at entry if it is its only thread
	kUnmap            // munmap(addr, len): sample the range at entry
	kMremap           // mremap(old, oldlen, newlen, flags, new): sample at entry
	kMadvise          // madvise(addr, len, advice): sample the range at entry
	kMmap             // mmap(addr, len, prot, flags, ...): MAP_FIXED replaces a range
)

// kinds maps system call numbers (both architectures' numbers come from
// golang.org/x/sys/unix) to kinds; numbers past its end are kNone.
var kinds = func() []kind {
	m := map[uint64]kind{
		unix.SYS_READ:                    kRead,
		unix.SYS_READV:                   kRead,
		unix.SYS_PREAD64:                 kPread,
		unix.SYS_PREADV:                  kPread,
		unix.SYS_PREADV2:                 kPreadv2,
		unix.SYS_SENDFILE:                kSendfile,
		unix.SYS_COPY_FILE_RANGE:         kCopyIn,
		unix.SYS_SPLICE:                  kCopyIn,
		unix.SYS_OPENAT:                  kOpen,
		unix.SYS_OPENAT2:                 kOpen,
		unix.SYS_OPEN_BY_HANDLE_AT:       kOpen,
		unix.SYS_DUP:                     kNewFD,
		unix.SYS_DUP3:                    kNewFD,
		unix.SYS_SOCKET:                  kNewFD,
		unix.SYS_ACCEPT:                  kNewFD,
		unix.SYS_ACCEPT4:                 kNewFD,
		unix.SYS_EPOLL_CREATE1:           kNewFD,
		unix.SYS_EVENTFD2:                kNewFD,
		unix.SYS_SIGNALFD4:               kNewFD,
		unix.SYS_TIMERFD_CREATE:          kNewFD,
		unix.SYS_INOTIFY_INIT1:           kNewFD,
		unix.SYS_FANOTIFY_INIT:           kNewFD,
		unix.SYS_MEMFD_CREATE:            kNewFD,
		unix.SYS_MEMFD_SECRET:            kNewFD,
		unix.SYS_PIDFD_OPEN:              kNewFD,
		unix.SYS_PIDFD_GETFD:             kNewFD,
		unix.SYS_PERF_EVENT_OPEN:         kNewFD,
		unix.SYS_USERFAULTFD:             kNewFD,
		unix.SYS_IO_URING_SETUP:          kNewFD,
		unix.SYS_BPF:                     kNewFD,
		unix.SYS_FSOPEN:                  kNewFD,
		unix.SYS_FSMOUNT:                 kNewFD,
		unix.SYS_FSPICK:                  kNewFD,
		unix.SYS_OPEN_TREE:               kNewFD,
		unix.SYS_OPEN_TREE_ATTR:          kNewFD,
		unix.SYS_LANDLOCK_CREATE_RULESET: kNewFD,
		unix.SYS_FCNTL:                   kFcntl,
		unix.SYS_CLOSE:                   kClose,
		unix.SYS_CLOSE_RANGE:             kCloseRange,
		unix.SYS_PIPE2:                   kFDsInMemory,
		unix.SYS_SOCKETPAIR:              kFDsInMemory,
		unix.SYS_RECVMSG:                 kFDsInMemory,
		unix.SYS_RECVMMSG:                kFDsInMemory,
		unix.SYS_EXECVE:                  kExec,
		unix.SYS_EXECVEAT:                kExec,
		unix.SYS_EXIT_GROUP:              kExitGroup,
		unix.SYS_EXIT:                    kExit,
		unix.SYS_MUNMAP:                  kUnmap,
		unix.SYS_MREMAP:                  kMremap,
		unix.SYS_MADVISE:                 kMadvise,
		unix.SYS_MMAP:                    kMmap,
	}
	for nr, k := range archKinds {
		m[nr] = k
	}
	var hi uint64
	for nr := range m {
		hi = max(hi, nr)
	}
	t := make([]kind, hi+1)
	for nr, k := range m {
		t[nr] = k
	}
	return t
}()

func kindOf(nr uint64) kind {
	if nr < uint64(len(kinds)) {
		return kinds[nr]
	}
	return kNone
}

// atExit tells whether a kind needs the syscall-exit stop's registers.
func (k kind) atExit() bool {
	switch k {
	case kNone, kExec, kExitGroup, kExit, kUnmap, kMremap, kMadvise, kMmap, kClose, kCloseRange:
		return false
	}
	return true
}

// madvise advices that drop pages from the page tables (so a later sample
// would not see them).
func dropsPages(advice uint64) bool {
	switch advice {
	case unix.MADV_DONTNEED, unix.MADV_FREE, unix.MADV_REMOVE, unix.MADV_COLD, unix.MADV_PAGEOUT:
		return true
	}
	return false
}

// fdEntry is what the tracer knows of one file descriptor of a process.
// The cache of a process is kept right by refreshing the slot of every
// descriptor a system call returns (open, dup, socket, ...) and dropping
// it all when descriptors come through memory (pipe, recvmsg) or exec;
// close drops the slot too when it is seen (not with the seccomp filter,
// which lets close run without a stop). A stale slot can only be hit by
// a read of a descriptor made by a call the tracer does not know: a read
// with the position is checked against fdinfo's inode (Linux 5.14+).
type fdEntry struct {
	path string
	ino  uint64
	ok   bool // a regular file (not deleted) whose reads are recorded
}

// maxFDCache caps one process's descriptor cache; past it the cache is
// dropped and refilled.
const maxFDCache = 1 << 14

// fd returns the entry of descriptor fd of task tk's process: from the
// cache, else from readlink and stat of /proc/TID/fd/FD.
func (t *tracer) fd(tk *task, fd int) fdEntry {
	p := t.procs[tk.tgid]
	if p == nil || fd < 0 {
		return fdEntry{}
	}
	if e, ok := p.fds[fd]; ok {
		return e
	}
	e := t.resolveFD(tk, fd)
	if len(p.fds) >= maxFDCache {
		clear(p.fds)
	}
	p.fds[fd] = e
	return e
}

func (t *tracer) resolveFD(tk *task, fd int) fdEntry {
	link := t.procPath(tk.tid, "fd", fd)
	var st unix.Stat_t
	if err := unix.Stat(link, &st); err != nil {
		if (err == unix.EACCES || err == unix.EPERM) && t.refreshCreds(tk) {
			return t.resolveFD(tk, fd)
		}
		return fdEntry{}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink == 0 {
		return fdEntry{ino: st.Ino}
	}
	name, err := readlink(link, t.linkBuf[:])
	if err != nil {
		return fdEntry{ino: st.Ino}
	}
	return fdEntry{path: name, ino: st.Ino, ok: t.wanted(name)}
}

func readlink(name string, buf []byte) (string, error) {
	n, err := unix.Readlink(name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// procPath is /proc/TID/DIR/FD, built without fmt.
func (t *tracer) procPath(tid int, dir string, fd int) string {
	b := t.pathBuf[:0]
	b = append(b, "/proc/"...)
	b = strconv.AppendInt(b, int64(tid), 10)
	b = append(b, '/')
	b = append(b, dir...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(fd), 10)
	t.pathBuf = b
	return string(b)
}

// position returns descriptor fd's file position and inode from
// /proc/TID/fdinfo/FD.
func (t *tracer) position(tid, fd int) (pos int64, ino uint64, hasIno, ok bool) {
	f, err := unix.Open(t.procPath(tid, "fdinfo", fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, false, false
	}
	n, err := unix.Read(f, t.infoBuf[:])
	unix.Close(f)
	if err != nil || n <= 0 {
		return 0, 0, false, false
	}
	return parseFdinfo(t.infoBuf[:n])
}

// syscallExit handles the exit of the system call tk entered, ret being
// its return value.
func (t *tracer) syscallExit(tk *task, k kind, ret uint64) {
	p := t.procs[tk.tgid]
	if p == nil {
		return
	}
	a := &tk.args
	switch k {
	case kOpen:
		if int64(ret) >= 0 {
			// Resolved now: an open for reading is the file's first
			// access.
			delete(p.fds, int(ret))
			if e := t.fd(tk, int(ret)); e.ok && t.openForReading(tk) {
				t.rec.noteOpen(e.path)
			}
		}
	case kNewFD:
		if int64(ret) >= 0 {
			delete(p.fds, int(ret))
		}
	case kFcntl:
		if (a[1] == unix.F_DUPFD || a[1] == unix.F_DUPFD_CLOEXEC) && int64(ret) >= 0 {
			delete(p.fds, int(ret))
		}
	case kFDsInMemory:
		if int64(ret) >= 0 {
			clear(p.fds)
		}
	case kRead, kPread, kPreadv2, kSendfile, kCopyIn:
		n := int64(ret)
		if n <= 0 {
			return
		}
		t.read(tk, k, n)
	}
}

// fdEntryAtEntry handles, at the entry of a system call, those that
// close descriptors, and tells whether the exit of a read matters: not
// for a descriptor that is not a regular file (a pipe, a socket).
func (t *tracer) fdEntryAtEntry(tk *task, k kind) (skipExit bool) {
	p := t.procs[tk.tgid]
	if p == nil {
		return true
	}
	a := &tk.args
	switch k {
	case kClose:
		delete(p.fds, int(int32(a[0])))
	case kCloseRange:
		lo, hi := a[0], a[1]
		if hi-lo > uint64(len(p.fds)) {
			for fd := range p.fds {
				if uint64(fd) >= lo && uint64(fd) <= hi {
					delete(p.fds, fd)
				}
			}
		} else {
			for fd := lo; fd <= hi; fd++ {
				delete(p.fds, int(fd))
			}
		}
	case kRead, kPread, kPreadv2, kCopyIn:
		return !t.fd(tk, int(int32(a[0]))).ok
	case kSendfile:
		return !t.fd(tk, int(int32(a[1]))).ok
	}
	return false
}

// openForReading tells whether the open tk made may read the file as it
// is in the image: not write-only, not O_PATH, not truncating it.
func (t *tracer) openForReading(tk *task) bool {
	a := &tk.args
	var flags uint64
	switch tk.nr {
	case unix.SYS_OPENAT, unix.SYS_OPEN_BY_HANDLE_AT:
		flags = a[2]
	case unix.SYS_OPENAT2:
		var b [8]byte // struct open_how starts with the flags
		if _, err := unix.PtracePeekData(tk.tid, uintptr(a[2]), b[:]); err != nil {
			return true
		}
		flags = binary.NativeEndian.Uint64(b[:])
	default:
		flags = archOpenFlags(tk.nr, a)
	}
	return flags&unix.O_ACCMODE != unix.O_WRONLY && flags&(unix.O_PATH|unix.O_TRUNC) == 0
}

// read records a read of n bytes by a system call of kind k.
func (t *tracer) read(tk *task, k kind, n int64) {
	a := &tk.args
	fd := int(int32(a[0]))
	var offp uint64 // pointer to the offset, for sendfile and copy_file_range
	switch k {
	case kSendfile:
		fd, offp = int(int32(a[1])), a[2]
	case kCopyIn:
		offp = a[1]
	}
	e := t.fd(tk, fd)
	if !e.ok {
		return // not a regular file, or not recorded
	}
	var off int64
	switch {
	case k == kPread || k == kPreadv2 && int64(a[3]) != -1:
		off = int64(a[3])
	case offp != 0:
		var b [8]byte
		if _, err := unix.PtracePeekData(tk.tid, uintptr(offp), b[:]); err != nil {
			return
		}
		off = int64(binary.NativeEndian.Uint64(b[:])) - n
	default:
		pos, ino, hasIno, ok := t.position(tk.tid, fd)
		if !ok {
			return
		}
		if hasIno && ino != e.ino {
			// The cache missed a change of the descriptor.
			delete(t.procs[tk.tgid].fds, fd)
			e = t.fd(tk, fd)
		}
		off = pos - n
	}
	if !e.ok || off < 0 {
		return
	}
	t.rec.addRead(e.path, off, n)
}
