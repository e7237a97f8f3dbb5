package layer

import (
	"fmt"
	"os"

	"github.com/socikit/socikit/snapshotter/fs"
)

// resumeFrom is a kept FUSE connection to serve (WithResume).
type resumeFrom struct {
	fd    *os.File
	state []byte
}

// WithResume makes Mount serve the mount at its mountpoint that an
// earlier process made and kept (Mounted.Keep), through fd, a descriptor
// of its FUSE connection, with state, what Keep returned: nothing is
// mounted, and reads the kernel queued while no process served the mount
// are answered. The layer must be the one mounted there. fd stays the
// caller's. Default: a new mount.
func WithResume(fd *os.File, state []byte) Option {
	return func(o *options) error {
		if fd == nil {
			return fmt.Errorf("resume: no descriptor")
		}
		o.resume = &resumeFrom{fd: fd, state: state}
		return nil
	}
}

func mountOrResume(lfs *fs.FS, mountpoint string, r *resumeFrom) (*fs.Mount, error) {
	if r == nil {
		return lfs.Mount(mountpoint)
	}
	return lfs.Resume(mountpoint, r.fd, r.state)
}

// Keep returns a new descriptor of the mount's FUSE connection and the
// state WithResume needs to serve it from another process, for keeping
// outside this one (snapshotter/fdstore): while the descriptor is open, a
// process that dies with the mount mounted does not end it; reads wait in
// the kernel until a new process resumes it.
func (m *Mounted) Keep() (*os.File, []byte, error) { return m.mnt.Keep() }
