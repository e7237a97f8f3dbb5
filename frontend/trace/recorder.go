package trace

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/socikit/socikit/profile"
)

// recorder collects reads and touched pages in first-access order, safe
// for the tracer thread, the sampler and the controller at once. It stops
// recording at its caps, or for good once stop is called.
//
// The order of the files is that of their first access: a file's position
// is the earlier of its first open (as seen at the open's syscall exit, or
// at an exec for the executable and its interpreter, which the kernel
// maps) and its first recorded read. So a file that is only mapped gets
// the position of its open, not that of the sample that found its pages.
type recorder struct {
	mu        sync.Mutex
	b         profile.Builder
	known     map[string]*fileState // files recorded
	opened    map[string]int64      // first open of a path, by sequence number
	seq       int64
	maxFiles  int
	maxRanges int
	truncated string // why recording stopped early, "" if it did not
	stopped   bool
}

// fileState is what the recorder keeps of a file it recorded.
type fileState struct {
	pages pageSet // pages seen mapped
	first int64   // sequence number of its first recorded read
}

// maxOpened caps the opens remembered (files opened and never read).
const maxOpened = 1 << 20

func newRecorder(maxFiles, maxRanges int) *recorder {
	return &recorder{known: map[string]*fileState{}, opened: map[string]int64{}, maxFiles: maxFiles, maxRanges: maxRanges}
}

// noteOpen records that name was opened (or mapped by exec), for the
// order of the files.
func (r *recorder) noteOpen(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	if _, ok := r.opened[name]; ok || len(r.opened) >= maxOpened {
		return
	}
	r.seq++
	r.opened[name] = r.seq
}

// admitLocked tells whether a read of name may be recorded, and returns
// the file's page set.
func (r *recorder) admitLocked(name string) (*fileState, bool) {
	if r.stopped || r.truncated != "" {
		return nil, false
	}
	if r.b.Ranges() >= r.maxRanges {
		r.truncated = fmt.Sprintf("recording stopped at the limit of %d ranges", r.maxRanges)
		return nil, false
	}
	fs, ok := r.known[name]
	if !ok {
		if len(r.known) >= r.maxFiles {
			r.truncated = fmt.Sprintf("recording stopped at the limit of %d files", r.maxFiles)
			return nil, false
		}
		r.seq++
		fs = &fileState{first: r.seq}
		r.known[name] = fs
	}
	return fs, true
}

// addRead records a read of [off, off+n) of name.
func (r *recorder) addRead(name string, off, n int64) {
	if n <= 0 || off < 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.admitLocked(name); ok {
		r.b.Add(name, off, n)
	}
}

// pageRun is a run of pages of one file seen present in one sample:
// file pages [first, first+n).
type pageRun struct {
	path  string
	first int64
	n     int64
}

// addPages records the pages of runs not seen before, in the runs' order
// (address order within a sample), pageSize bytes each.
func (r *recorder) addPages(runs []pageRun, pageSize int64) {
	if len(runs) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, run := range runs {
		fs, ok := r.admitLocked(run.path)
		if !ok {
			return
		}
		ps := &fs.pages
		// Record the maximal sub-runs of pages not seen before.
		start := int64(-1)
		for p := run.first; p < run.first+run.n; p++ {
			if ps.testAndSet(p) {
				if start >= 0 {
					r.b.Add(run.path, start*pageSize, (p-start)*pageSize)
					start = -1
				}
				continue
			}
			if start < 0 {
				start = p
			}
		}
		if start >= 0 {
			r.b.Add(run.path, start*pageSize, (run.first+run.n-start)*pageSize)
		}
	}
}

// stop ends recording.
func (r *recorder) stop() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}

// result returns the files recorded, in first-access order, and why
// recording stopped early.
func (r *recorder) result() ([]profile.File, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	files := r.b.Profile().Files
	key := func(f profile.File) int64 {
		k := r.known[f.Path].first
		if o, ok := r.opened[f.Path]; ok && o < k {
			k = o
		}
		return k
	}
	slices.SortStableFunc(files, func(a, b profile.File) int { return cmp.Compare(key(a), key(b)) })
	return files, r.truncated
}

// pageSet is a sparse set of page numbers: 4096-page chunks of bits.
type pageSet struct {
	chunks map[int64]*[64]uint64
}

// testAndSet adds page p and tells whether it was there already.
func (s *pageSet) testAndSet(p int64) bool {
	if s.chunks == nil {
		s.chunks = map[int64]*[64]uint64{}
	}
	c := s.chunks[p>>12]
	if c == nil {
		c = new([64]uint64)
		s.chunks[p>>12] = c
	}
	i := p & 4095
	w, bit := &c[i>>6], uint64(1)<<(i&63)
	if *w&bit != 0 {
		return true
	}
	*w |= bit
	return false
}
