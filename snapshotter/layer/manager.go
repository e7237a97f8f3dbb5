package layer

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/socikit/socikit/snapshotter/cache"
)

// ErrNotMounted is returned by Manager.Check for a mountpoint it has no
// layer on.
var ErrNotMounted = errors.New("no layer mounted there")

// Manager keeps the layers a daemon has mounted, by mountpoint: the shape
// of snapshot.FileSystem's Check and Unmount. It is safe for concurrent
// use.
type Manager struct {
	c    *cache.Cache
	opts []Option

	mu     sync.Mutex
	mounts map[string]*Mounted
}

// NewManager returns a Manager mounting layers over cache c with opts
// (applied before the options of each Mount).
func NewManager(c *cache.Cache, opts ...Option) *Manager {
	return &Manager{c: c, opts: opts, mounts: make(map[string]*Mounted)}
}

// Mount mounts src at mountpoint (see Mount). A layer already mounted
// there is unmounted first.
func (m *Manager) Mount(ctx context.Context, mountpoint string, src Source, opts ...Option) error {
	mountpoint = filepath.Clean(mountpoint)
	if err := m.Unmount(ctx, mountpoint); err != nil {
		return err
	}
	mnt, err := Mount(ctx, mountpoint, src, m.c, append(append([]Option(nil), m.opts...), opts...)...)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.mounts[mountpoint] = mnt
	m.mu.Unlock()
	return nil
}

// Get returns the layer mounted at mountpoint, or nil.
func (m *Manager) Get(mountpoint string) *Mounted {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mounts[filepath.Clean(mountpoint)]
}

// Check reports whether a layer is mounted at mountpoint and still serves.
func (m *Manager) Check(ctx context.Context, mountpoint string) error {
	mnt := m.Get(mountpoint)
	if mnt == nil {
		return fmt.Errorf("check %s: %w", mountpoint, ErrNotMounted)
	}
	return mnt.Check(ctx)
}

// Unmount unmounts the layer at mountpoint, if any.
func (m *Manager) Unmount(ctx context.Context, mountpoint string) error {
	mountpoint = filepath.Clean(mountpoint)
	m.mu.Lock()
	mnt := m.mounts[mountpoint]
	delete(m.mounts, mountpoint)
	m.mu.Unlock()
	if mnt == nil {
		return nil
	}
	return mnt.Unmount()
}

// Close unmounts every layer.
func (m *Manager) Close() error {
	m.mu.Lock()
	all := m.mounts
	m.mounts = make(map[string]*Mounted)
	m.mu.Unlock()
	var errs []error
	for _, mnt := range all {
		errs = append(errs, mnt.Unmount())
	}
	return errors.Join(errs...)
}
