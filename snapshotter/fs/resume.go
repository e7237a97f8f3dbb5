package fs

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// A mount survives the daemon that serves it when a descriptor of its
// /dev/fuse connection stays open elsewhere (a holder process, systemd's
// fd store): the kernel then queues the mount's requests instead of
// aborting the connection, and another process can serve them (Resume).
// Keep gives what that process needs: the descriptor and the connection's
// state (the INIT the kernel sent, and how many servers it had). Node ids
// are inode numbers (Options: ExternalNodeID), the same for every server of
// the layer; ids and file handles the kernel holds from an earlier server
// are adopted (go-fuse's AdoptUnknownIDs, third_party/go-fuse/PATCHES.md).

// resumeState is what Keep saves next to the descriptor.
type resumeState struct {
	V int `json:"v"`
	// Gen counts the servers of the connection before the one that
	// saved the state (0: the one that mounted it). Each server's file
	// handles are numbered from (Gen+1)<<32 on (its own Gen: FileHandleBase).
	Gen uint32 `json:"gen"`
	// Init is the kernel's fuse.InitIn, in native byte order.
	Init []byte `json:"init"`
}

const resumeStateVersion = 1

// maxResumeState bounds the state Resume parses.
const maxResumeState = 4096

// Keep returns a new descriptor of the mount's /dev/fuse connection and
// the state Resume needs to serve it from another process. While the
// descriptor is open, the connection outlives this server: requests wait
// in the kernel until a server reads them. Close it once the mount is
// gone (or given up), or the kernel keeps the connection.
func (m *Mount) Keep() (*os.File, []byte, error) {
	fd, err := m.srv.DupFD()
	if err != nil {
		return nil, nil, fmt.Errorf("keep the fuse connection of %s: %w", m.dir, err)
	}
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, m.srv.KernelSettings()); err != nil {
		fd.Close()
		return nil, nil, fmt.Errorf("keep the fuse connection of %s: %w", m.dir, err)
	}
	st, err := json.Marshal(resumeState{V: resumeStateVersion, Gen: m.gen, Init: b.Bytes()})
	if err != nil {
		fd.Close()
		return nil, nil, err
	}
	return fd, st, nil
}

// Resume serves the layer's mount at mountpoint that another server
// mounted and kept (Keep): fd is a descriptor of its connection, state
// what Keep returned with it. Nothing is mounted; requests the kernel
// queued meanwhile are served. f must be the layer that was mounted (same
// zTOC: the kernel's node ids are its inode numbers) with the same
// options. fd stays the caller's (Resume serves a duplicate of it).
// Unmount unmounts the mount as if Mount had made it.
func (f *FS) Resume(mountpoint string, fd *os.File, state []byte) (*Mount, error) {
	st, init, err := parseResumeState(state)
	if err != nil {
		return nil, fmt.Errorf("resume the mount at %s: %w", mountpoint, err)
	}
	nfd, err := dupCloexec(fd)
	if err != nil {
		return nil, fmt.Errorf("resume the mount at %s: %w", mountpoint, err)
	}
	gen := st.Gen + 1
	opts := f.Options()
	opts.AdoptUnknownIDs = true
	opts.FileHandleBase = uint64(gen) << 32
	s, err := fuse.ResumeServer(countOps(fusefs.NewNodeFS(f.Root(), opts), f.o.ops), nfd, mountpoint, init, &opts.MountOptions)
	if err != nil {
		syscall.Close(nfd)
		return nil, fmt.Errorf("resume the mount at %s: %w", mountpoint, err)
	}
	f.srv = s
	go s.Serve()
	return &Mount{srv: s, dir: mountpoint, gen: gen}, nil
}

func parseResumeState(state []byte) (resumeState, *fuse.InitIn, error) {
	var st resumeState
	if len(state) > maxResumeState {
		return st, nil, fmt.Errorf("state of %d bytes", len(state))
	}
	if err := json.Unmarshal(state, &st); err != nil {
		return st, nil, fmt.Errorf("parse state: %w", err)
	}
	if st.V != resumeStateVersion {
		return st, nil, fmt.Errorf("state version %d, want %d", st.V, resumeStateVersion)
	}
	var init fuse.InitIn
	if len(st.Init) != binary.Size(&init) {
		return st, nil, fmt.Errorf("INIT of %d bytes, want %d", len(st.Init), binary.Size(&init))
	}
	if err := binary.Read(bytes.NewReader(st.Init), binary.NativeEndian, &init); err != nil {
		return st, nil, fmt.Errorf("parse INIT: %w", err)
	}
	if st.Gen == 1<<32-1 {
		return st, nil, errors.New("connection resumed too often")
	}
	return st, &init, nil
}

func dupCloexec(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return nfd, derr
}

var _ fusefs.NodeLookupNoder = (*node)(nil)

// LookupNode implements fusefs.NodeLookupNoder (on the root): the node of
// inode number id, for a node id the kernel got from an earlier server of
// the mount (Resume).
func (n *node) LookupNode(ctx context.Context, id uint64, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	e := n.fs.entryByIno(id)
	if e == nil {
		return nil, syscall.ESTALE
	}
	n.fs.fillAttr(e, &out.Attr)
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
	return n.NewInode(ctx, &node{fs: n.fs, e: e}, fusefs.StableAttr{Mode: e.mode & syscall.S_IFMT, Ino: e.ino}), 0
}

// inoIndex maps inode numbers to entries, built at the first LookupNode.
type inoIndex struct {
	once  sync.Once
	byIno map[uint64]*entry
}

// entryByIno returns the entry of inode number ino, or nil.
func (f *FS) entryByIno(ino uint64) *entry {
	f.inos.once.Do(func() {
		m := map[uint64]*entry{}
		var walk func(e *entry)
		walk = func(e *entry) {
			if _, ok := m[e.ino]; ok {
				return // a hard link seen before
			}
			m[e.ino] = e
			for _, k := range e.kids {
				walk(k.e)
			}
		}
		walk(f.root)
		f.inos.byIno = m
	})
	return f.inos.byIno[ino]
}
