package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/snapshotter/snapshot"
)

// The local store (persist.go) is collected: after every Cleanup of the
// snapshotter (a snapshot's removal, containerd's garbage collection) and
// once the restore at start is over, the records of layers no snapshot
// names are removed, then the artifacts (zTOCs, prefetch lists) no record
// names, and the temporary files a crash left. What is left is capped
// (storeMaxSize): past the cap, whole artifacts go oldest first (a layer whose
// zTOC went fetches it again at its next mount, as at a first one).

// DefaultStoreMaxSize caps the local store's artifacts when the span cache
// has no size limit; with one, the cap is a quarter of it if that is less,
// but at least MinStoreMaxSize. zTOCs are 1-3% of their layers with spans
// of 1-4 MiB (32 KiB of checkpoint window per span), so this keeps those
// of some tens of GB of lazily mounted layers.
const (
	DefaultStoreMaxSize = 1 << 30
	MinStoreMaxSize     = 64 << 20
)

// storeMaxSize returns the cap of the local store of ls.
func storeMaxSize(ls *Layers) int64 {
	if ls == nil || ls.cache == nil || ls.cache.MaxSize() == 0 {
		return DefaultStoreMaxSize
	}
	return max(MinStoreMaxSize, min(DefaultStoreMaxSize, ls.cache.MaxSize()/4))
}

// mountGate keeps collections and Mounts apart: a collection lists the
// snapshots and removes what none names while no Mount is in flight and
// none started since the listing; otherwise it is put off until the last
// Mount in flight ends.
type mountGate struct {
	mu       sync.Mutex
	mounting int
	started  uint64
	pending  func() // a collection put off
}

func (g *mountGate) begin() {
	g.mu.Lock()
	g.mounting++
	g.started++
	g.mu.Unlock()
}

func (g *mountGate) end() {
	g.mu.Lock()
	g.mounting--
	var run func()
	if g.mounting == 0 {
		run, g.pending = g.pending, nil
	}
	g.mu.Unlock()
	if run != nil {
		go run()
	}
}

var _ snapshot.Collector = (*FileSystem)(nil)

// Collect implements snapshot.Collector: it removes from the local store
// the records of layers no snapshot's labels name, the artifacts no record
// names, and, past the store's cap, the oldest artifacts.
func (f *FileSystem) Collect(ctx context.Context, labels func(context.Context) ([]map[string]string, error)) error {
	if f.store == nil {
		return nil
	}
	later := func() {
		if err := f.Collect(context.WithoutCancel(ctx), labels); err != nil {
			log.G(ctx).WithError(err).Warn("collect the local store")
		}
	}
	g := &f.gate
	g.mu.Lock()
	if g.mounting > 0 {
		g.pending = later
		g.mu.Unlock()
		return nil
	}
	start := g.started
	g.mu.Unlock()
	ls, err := labels(ctx)
	if err != nil {
		return err
	}
	live := make(map[string]bool, len(ls))
	for _, l := range ls {
		if k, ok := layerKey(l); ok {
			live[k] = true
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mounting > 0 || g.started != start {
		g.pending = later
		return nil
	}
	var maxSize int64 = DefaultStoreMaxSize
	if lm, ok := f.m.(*Layers); ok {
		maxSize = storeMaxSize(lm)
	}
	st, err := f.store.collect(live, maxSize)
	if st.records+st.artifacts+st.capped > 0 {
		log.G(ctx).WithField("records", st.records).WithField("artifacts", st.artifacts).WithField("capped", st.capped).
			WithField("bytes", st.bytes).WithField("kept", st.kept).Info("local store collected")
	}
	return err
}

// collectStats says what a collection removed and kept.
type collectStats struct {
	records, artifacts, capped int   // files removed: unnamed records, unnamed artifacts, artifacts past the cap
	bytes, kept                int64 // artifact bytes removed, kept
}

// collect removes the records whose key is not in live, the artifacts no
// record left names, temporary files, and the oldest artifacts past
// maxSize bytes (0: no cap). It must not run beside a Mount (mountGate).
func (s *localStore) collect(live map[string]bool, maxSize int64) (collectStats, error) {
	var st collectStats
	var errs []error
	remove := func(p string) bool {
		err := os.Remove(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			return false
		}
		return true
	}
	named := map[digest.Digest]bool{}
	dir := filepath.Join(s.root, "layers")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("collect local store: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		key, ok := strings.CutSuffix(e.Name(), ".json")
		if strings.HasPrefix(e.Name(), ".tmp-") || (ok && !live[key]) {
			if remove(p) && ok {
				st.records++
			}
			continue
		}
		if !ok {
			continue
		}
		b, err := os.ReadFile(p)
		var r layerRecord
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			// Unreadable: the layer is looked up again at its mount.
			if remove(p) {
				st.records++
			}
			continue
		}
		named[r.Ztoc.Digest] = true
		if r.Prefetch != nil {
			named[r.Prefetch.Digest] = true
		}
		if r.LazyZtoc != nil {
			named[r.LazyZtoc.Digest] = true
		}
	}

	type artifact struct {
		path string
		size int64
		mod  time.Time
	}
	var kept []artifact
	root := filepath.Join(s.root, "artifacts")
	algs, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("collect local store: %w", err)
	}
	for _, a := range algs {
		if !a.IsDir() {
			continue
		}
		adir := filepath.Join(root, a.Name())
		ents, err := os.ReadDir(adir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range ents {
			p := filepath.Join(adir, e.Name())
			if strings.HasPrefix(e.Name(), ".tmp-") {
				remove(p)
				continue
			}
			// <hex>.part: a zTOC read lazily (lazyztoc.go), held open
			// by its mount and renamed to <hex> once complete.
			hex, part := strings.CutSuffix(e.Name(), ".part")
			d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), hex)
			if d.Validate() != nil || !e.Type().IsRegular() {
				continue // not ours
			}
			fi, err := e.Info()
			if err != nil {
				continue
			}
			if !named[d] {
				if remove(p) {
					st.artifacts++
					st.bytes += fi.Size()
				}
				continue
			}
			if !part { // a mounted layer's part is not capped: its mount renames it
				kept = append(kept, artifact{p, fi.Size(), fi.ModTime()})
				st.kept += fi.Size()
			}
		}
	}
	if maxSize > 0 && st.kept > maxSize {
		sort.Slice(kept, func(i, j int) bool {
			if !kept[i].mod.Equal(kept[j].mod) {
				return kept[i].mod.Before(kept[j].mod)
			}
			return kept[i].path < kept[j].path
		})
		for _, a := range kept {
			if st.kept <= maxSize {
				break
			}
			if remove(a.path) {
				st.capped++
				st.bytes += a.size
				st.kept -= a.size
			}
		}
	}
	if len(errs) > 0 {
		return st, fmt.Errorf("collect local store: %w", errors.Join(errs...))
	}
	return st, nil
}
