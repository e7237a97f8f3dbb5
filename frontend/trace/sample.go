package trace

import (
	"encoding/binary"
	"io"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// sampler finds the file pages a process has mapped and touched, from
// /proc/PID/maps and /proc/PID/pagemap. It needs no ptrace call: the
// tracer thread, the sampling goroutine and the controller all use it,
// each with its own sampleBuf.
type sampler struct {
	rec      *recorder
	pageSize uint64
	wanted   func(string) bool

	statMu  sync.Mutex
	regular map[string]bool // path of a mapped file -> regular and recorded

	snapMu sync.Mutex
	snaps  map[int][]span // last maps read, per process
}

// span is a mapping of a snapshot.
type span struct {
	start, end uint64
	file       bool // a file mapping whose pages are recorded
}

// sampleBuf is one sampling caller's buffers.
type sampleBuf struct {
	maps   []byte
	parsed []mapping
	pm     []byte
	runs   []pageRun
}

// maxScanPages caps the pages of one mapping a sample looks at (4 GiB of
// 4 KiB pages, 8 MiB of pagemap): a bigger file mapping is sampled in its
// first 4 GiB only.
const maxScanPages = 1 << 20

// pagemapChunk is the number of pagemap entries read at once.
const pagemapChunk = 1 << 14

func newSampler(rec *recorder, wanted func(string) bool) *sampler {
	return &sampler{
		rec:      rec,
		pageSize: uint64(os.Getpagesize()),
		wanted:   wanted,
		regular:  map[string]bool{},
		snaps:    map[int][]span{},
	}
}

// sample records the file pages of process pid present (or swapped out)
// in [lo, hi), in address order. It returns false if the process's maps
// could not be read (it is gone).
func (s *sampler) sample(pid int, lo, hi uint64, sb *sampleBuf) bool {
	if !s.readMaps(pid, sb) {
		return false
	}
	sb.runs = sb.runs[:0]
	pm := -1
	defer func() {
		if pm >= 0 {
			unix.Close(pm)
		}
	}()
	snap := make([]span, len(sb.parsed))
	for i := range sb.parsed {
		m := &sb.parsed[i]
		want := m.file() && s.mappedFileWanted(m.path)
		snap[i] = span{start: m.start, end: m.end, file: want}
		if !want || m.end <= lo || m.start >= hi {
			continue
		}
		if pm < 0 {
			var err error
			if pm, err = unix.Open("/proc/"+strconv.Itoa(pid)+"/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
				return false
			}
		}
		s.scan(pm, m, max(m.start, lo), min(m.end, hi), sb)
	}
	s.snapMu.Lock()
	s.snaps[pid] = snap
	s.snapMu.Unlock()
	s.rec.addPages(sb.runs, int64(s.pageSize))
	return true
}

// scan appends the runs of present pages of m within [a, b).
func (s *sampler) scan(pm int, m *mapping, a, b uint64, sb *sampleBuf) {
	ps := s.pageSize
	a &^= ps - 1
	b = (b + ps - 1) &^ (ps - 1)
	if (b-a)/ps > maxScanPages {
		b = a + maxScanPages*ps
	}
	if cap(sb.pm) < pagemapChunk*8 {
		sb.pm = make([]byte, pagemapChunk*8)
	}
	for va := a; va < b; {
		n := min((b-va)/ps, pagemapChunk)
		buf := sb.pm[:n*8]
		k, err := unix.Pread(pm, buf, int64(va/ps*8))
		if err != nil || k <= 0 {
			return
		}
		for i := 0; i+8 <= k; i += 8 {
			e := binary.LittleEndian.Uint64(buf[i:])
			if e&(pagemapPresent|pagemapSwapped) == 0 {
				continue
			}
			page := int64((m.offset + (va + uint64(i/8)*ps - m.start)) / ps)
			if r := len(sb.runs) - 1; r >= 0 && sb.runs[r].path == m.path && sb.runs[r].first+sb.runs[r].n == page {
				sb.runs[r].n++
				continue
			}
			sb.runs = append(sb.runs, pageRun{path: m.path, first: page, n: 1})
		}
		va += uint64(k/8) * ps
	}
}

// readMaps reads and parses /proc/PID/maps into sb.
func (s *sampler) readMaps(pid int, sb *sampleBuf) bool {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return false
	}
	defer f.Close()
	if cap(sb.maps) == 0 {
		sb.maps = make([]byte, 0, 64<<10)
	}
	sb.maps = sb.maps[:0]
	for {
		if len(sb.maps) == cap(sb.maps) {
			sb.maps = append(sb.maps, 0)[:len(sb.maps)]
		}
		n, err := f.Read(sb.maps[len(sb.maps):cap(sb.maps)])
		sb.maps = sb.maps[:len(sb.maps)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return false
		}
	}
	sb.parsed = parseMaps(sb.maps, sb.parsed)
	return len(sb.parsed) > 0 // none: a zombie
}

// forget drops the snapshot of a process that is gone or exec'd.
func (s *sampler) forget(pid int) {
	s.snapMu.Lock()
	delete(s.snaps, pid)
	s.snapMu.Unlock()
}

// needsSample tells whether unmapping (or dropping) [lo, hi) in process
// pid may lose touched file pages not yet sampled: the range overlaps a
// file mapping of the last snapshot, or is not all covered by it (a
// mapping made since).
func (s *sampler) needsSample(pid int, lo, hi uint64) bool {
	if hi <= lo {
		return false
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	snap, ok := s.snaps[pid]
	if !ok {
		return true
	}
	covered := lo
	for i := range snap {
		m := &snap[i]
		if m.end <= lo || m.start >= hi {
			continue
		}
		if m.file {
			return true
		}
		if m.start > covered {
			return true
		}
		covered = max(covered, m.end)
	}
	return covered < hi
}

// mappedFileWanted tells whether pages of a mapped file are recorded: a
// regular file, not excluded. Stat results are kept per path.
func (s *sampler) mappedFileWanted(name string) bool {
	s.statMu.Lock()
	ok, seen := s.regular[name]
	s.statMu.Unlock()
	if seen {
		return ok
	}
	ok = false
	if s.wanted(name) {
		var st unix.Stat_t
		ok = unix.Stat(name, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
	}
	s.statMu.Lock()
	if len(s.regular) > 1<<16 {
		clear(s.regular)
	}
	s.regular[name] = ok
	s.statMu.Unlock()
	return ok
}
