// Package fdstore keeps file descriptors alive outside the daemon, so
// that they outlive a daemon killed with kill -9: the /dev/fuse
// connections of its lazy layer mounts (a FUSE connection ends when its
// last descriptor closes; while one is open, the kernel queues the mount's
// requests until a server reads them). Each descriptor is kept under a
// name with a small opaque record (the daemon's: mountpoint and connection
// state); a restarted daemon takes them back (Take) and serves them again.
//
// Two stores: systemd's file descriptor store (Systemd: sd_notify
// FDSTORE=1 with FDNAME, the unit needs FileDescriptorStoreMax=; the
// records are files in a directory), and a small holder process for
// everything else (Holder, Serve: a unix socket, descriptors passed by
// SCM_RIGHTS).
package fdstore

import (
	"errors"
	"fmt"
	"os"
)

// Kept is a descriptor kept by an earlier process.
type Kept struct {
	Name string
	Meta []byte
	File *os.File
}

// Store keeps descriptors under names. It is safe for concurrent use.
type Store interface {
	// Put keeps a duplicate of f (the caller keeps f) with meta under
	// name, replacing what name had.
	Put(name string, meta []byte, f *os.File) error
	// Remove closes what name has (nothing: no error).
	Remove(name string) error
	// Take returns duplicates of what was kept when the store was opened
	// (by an earlier process); the store keeps them until Remove. The
	// caller closes the files.
	Take() ([]Kept, error)
	// Close closes the store's connection; what it keeps stays kept.
	Close() error
}

// Limits of what a store keeps.
const (
	// MaxName bounds a name (systemd's FDNAME limit).
	MaxName = 255
	// MaxMeta bounds a record.
	MaxMeta = 16 << 10
	// MaxEntries bounds the descriptors a holder keeps.
	MaxEntries = 1 << 14
)

// checkEntry checks a name and record against the limits. Names are
// printable ASCII without ':' (systemd's rule for FDNAME).
func checkEntry(name string, meta []byte) error {
	if name == "" || len(name) > MaxName {
		return fmt.Errorf("fd name of %d bytes", len(name))
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || c == ':' {
			return fmt.Errorf("fd name %q: want printable ASCII without ':' or spaces", name)
		}
	}
	if len(meta) > MaxMeta {
		return fmt.Errorf("fd record of %d bytes, at most %d", len(meta), MaxMeta)
	}
	return nil
}

// errClosed is returned by a closed store.
var errClosed = errors.New("fd store closed")
