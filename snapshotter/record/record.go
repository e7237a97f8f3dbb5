// Package record records, per image, the byte ranges that containers read
// from lazily mounted layers during the first seconds of each start: the
// start-up profile of the image as socikit-snapshotter sees it
// (profile.SourceSnapshotter), for `socikit profile export` and the next
// build.
//
// A Recorder holds the profiles; each mounted layer has a Layer, which is
// the layer filesystem's fs.ReadObserver. Start opens a recording window
// on the layers under a container's root filesystem, for the image the
// container runs: until the window closes, every FUSE read of those
// layers adds its range to that image's profile. Files are ordered by
// their first access, across the image's layers (one sequence per image);
// each file's ranges by first access too, touching and overlapping ranges
// merged as they come. Another start of the same image re-opens the
// window and adds to the same profile.
//
// Memory is bounded: at most Options.MaxFiles files and Options.MaxRanges
// ranges per layer of each image (reads past them are counted as dropped),
// at most Options.MaxImages images (the one started longest ago is
// dropped). When no window is open the read path costs one atomic load;
// when one is, a clock read and a short lock of that layer's record.
//
// Only reads that reach the daemon are seen: not layers containerd
// unpacked itself (no zTOC), not reads the kernel answers from its page
// cache (a second start of an image on the same host mostly), not files
// served through FUSE passthrough. Ranges are what the kernel asked for:
// whole pages, with its read-ahead.
package record

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/socikit/socikit/profile"
)

// Defaults of Options.
const (
	DefaultWindow    = 30 * time.Second
	DefaultMaxFiles  = 4096
	DefaultMaxRanges = 16384
	DefaultMaxImages = 16
)

// maxFileRanges bounds the distinct ranges of one file: a read that
// touches none of them is compared with each (newest first) before it is
// added.
const maxFileRanges = 1024

// Options bound a Recorder. Zero fields take the defaults.
type Options struct {
	// Window is how long after a start reads are recorded.
	Window time.Duration
	// MaxFiles caps the files recorded per layer of an image.
	MaxFiles int
	// MaxRanges caps the ranges recorded per layer of an image (over all
	// its files).
	MaxRanges int
	// MaxImages caps the images whose profiles are kept; starting another
	// drops the one started longest ago.
	MaxImages int
}

func (o Options) withDefaults() Options {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.MaxRanges <= 0 {
		o.MaxRanges = DefaultMaxRanges
	}
	if o.MaxImages <= 0 {
		o.MaxImages = DefaultMaxImages
	}
	return o
}

// Recorder keeps the start-up profiles of images. It is safe for
// concurrent use.
type Recorder struct {
	o   Options
	now func() time.Time

	mu     sync.Mutex
	images map[string]*imageRec
	layers map[*Layer]struct{} // open layers
}

// New returns a Recorder bounded by o.
func New(o Options) *Recorder {
	return &Recorder{o: o.withDefaults(), now: time.Now, images: map[string]*imageRec{}, layers: map[*Layer]struct{}{}}
}

// Options returns the Recorder's bounds, defaults applied.
func (r *Recorder) Options() Options { return r.o }

// imageRec is the profile of one image, by layer.
type imageRec struct {
	name    string
	seq     atomic.Int64 // first-access sequence, across the image's layers
	started time.Time    // last start
	starts  int
	keys    []string             // the last starts' keys, newest last
	layers  map[string]*layerRec // by layer digest; guarded by Recorder.mu
	meta    any                  // guarded by Recorder.mu
}

// layerRec is what one image's containers read of one layer.
type layerRec struct {
	mu            sync.Mutex
	files         map[int]*fileRec // by TOC entry index
	ranges        int
	droppedFiles  int64
	droppedRanges int64
}

type fileRec struct {
	seq    int64
	path   string
	ranges []profile.Range
}

// window is an open recording window of one layer.
type window struct {
	img   *imageRec
	rec   *layerRec
	until time.Time
}

// Layer is one mounted layer: the fs.ReadObserver of its filesystem.
type Layer struct {
	r      *Recorder
	digest string
	cur    atomic.Pointer[window]
}

// Layer returns the observer of a newly mounted layer; digest names the
// layer (a layer mounted again shares its records). Close it when the
// layer is unmounted.
func (r *Recorder) Layer(digest string) *Layer {
	l := &Layer{r: r, digest: digest}
	r.mu.Lock()
	r.layers[l] = struct{}{}
	r.mu.Unlock()
	return l
}

// Close stops recording l's reads; what was recorded stays with the
// images.
func (l *Layer) Close() {
	l.r.mu.Lock()
	delete(l.r.layers, l)
	l.r.mu.Unlock()
	l.cur.Store(nil)
}

// ObserveRead implements fs.ReadObserver.
func (l *Layer) ObserveRead(file int, name string, off, n int64) {
	w := l.cur.Load()
	if w == nil {
		return
	}
	if l.r.now().After(w.until) {
		l.cur.CompareAndSwap(w, nil)
		return
	}
	w.rec.add(w.img, &l.r.o, file, name, off, n)
}

func (rec *layerRec) add(img *imageRec, o *Options, file int, name string, off, n int64) {
	if n <= 0 || off < 0 {
		return
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	f := rec.files[file]
	if f == nil {
		if len(rec.files) >= o.MaxFiles || rec.ranges >= o.MaxRanges {
			rec.droppedFiles++
			return
		}
		p := profile.CleanPath(name)
		if len(p) > profile.MaxPathLen || strings.IndexByte(p, 0) >= 0 || !utf8.ValidString(p) {
			return // not representable in a profile
		}
		f = &fileRec{seq: img.seq.Add(1), path: p}
		rec.files[file] = f
	}
	end := off + n
	// Most reads continue the file's last one: newest first.
	for k := len(f.ranges) - 1; k >= 0; k-- {
		q := &f.ranges[k]
		if off <= q.End() && end >= q.Offset {
			lo, hi := min(q.Offset, off), max(q.End(), end)
			q.Offset, q.Length = lo, hi-lo
			return
		}
	}
	if rec.ranges >= o.MaxRanges || len(f.ranges) >= maxFileRanges {
		rec.droppedRanges++
		return
	}
	f.ranges = append(f.ranges, profile.Range{Offset: off, Length: n})
	rec.ranges++
}

// recentKeys is how many start keys an image remembers to count each start
// once.
const recentKeys = 8

// Start opens a recording window of Options.Window on layers for image
// (a container of image is starting over them), and returns whether it
// did. key names the start (the container's snapshot): containerd asks
// for a container's root filesystem more than once as it starts it, and
// each of those re-opens the window, but a key seen lately is not counted
// as another start. A layer already recording for an image records for
// this one from now on. meta, when not nil, is kept with the image
// (Info.Meta). Layers closed meanwhile are skipped.
func (r *Recorder) Start(image, key string, meta any, layers ...*Layer) bool {
	if image == "" || len(layers) == 0 {
		return false
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	img := r.images[image]
	if img == nil {
		for len(r.images) >= r.o.MaxImages {
			r.dropOldest()
		}
		img = &imageRec{name: image, layers: map[string]*layerRec{}}
		r.images[image] = img
	}
	img.started = now
	if !slices.Contains(img.keys, key) {
		img.starts++
		if len(img.keys) == recentKeys {
			img.keys = slices.Delete(img.keys, 0, 1)
		}
		img.keys = append(img.keys, key)
	}
	if meta != nil {
		img.meta = meta
	}
	for _, l := range layers {
		if _, open := r.layers[l]; !open {
			continue
		}
		rec := img.layers[l.digest]
		if rec == nil {
			rec = &layerRec{files: map[int]*fileRec{}}
			img.layers[l.digest] = rec
		}
		l.cur.Store(&window{img: img, rec: rec, until: now.Add(r.o.Window)})
	}
	return true
}

// dropOldest drops the image started longest ago, closing its windows.
func (r *Recorder) dropOldest() {
	var old *imageRec
	for _, img := range r.images {
		if old == nil || img.started.Before(old.started) {
			old = img
		}
	}
	if old == nil {
		return
	}
	delete(r.images, old.name)
	for l := range r.layers {
		if w := l.cur.Load(); w != nil && w.img == old {
			l.cur.CompareAndSwap(w, nil)
		}
	}
}

// Info describes the profile of an image.
type Info struct {
	// Image is the image's name as given to Start.
	Image string
	// Starts counts the starts recorded (by key); LastStart is the last
	// one.
	Starts    int
	LastStart time.Time
	// Recording reports whether a window is still open on a layer.
	Recording bool
	// Files and Ranges count what was recorded (per layer; a path read in
	// two layers counts twice).
	Files, Ranges int
	// DroppedFiles and DroppedRanges count the reads of new files and new
	// ranges left out because a layer's caps were reached.
	DroppedFiles, DroppedRanges int64
	// Meta is the last non-nil meta given to Start.
	Meta any
}

// Images returns the images that have a profile, most recently started
// first.
func (r *Recorder) Images() []Info {
	r.mu.Lock()
	imgs := make([]*imageRec, 0, len(r.images))
	for _, img := range r.images {
		imgs = append(imgs, img)
	}
	r.mu.Unlock()
	out := make([]Info, 0, len(imgs))
	for _, img := range imgs {
		info, _ := r.collect(img, false)
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := b.LastStart.Compare(a.LastStart); c != 0 {
			return c
		}
		return cmp.Compare(a.Image, b.Image)
	})
	return out
}

// Profile returns the profile recorded for image (files in first-access
// order across its layers, a path read in two layers once, at its first
// access), and ok false when there is none.
func (r *Recorder) Profile(image string) (_ *profile.Profile, _ Info, ok bool) {
	r.mu.Lock()
	img := r.images[image]
	r.mu.Unlock()
	if img == nil {
		return nil, Info{}, false
	}
	info, files := r.collect(img, true)
	slices.SortFunc(files, func(a, b fileRec) int { return cmp.Compare(a.seq, b.seq) })
	var b profile.Builder
	for _, f := range files {
		if b.Len() >= profile.MaxFiles {
			break
		}
		for _, rg := range f.ranges {
			if b.Ranges() >= profile.MaxRanges {
				break
			}
			b.Add(f.path, rg.Offset, rg.Length)
		}
	}
	p := b.Profile()
	p.Source = profile.SourceSnapshotter
	if p.Files == nil {
		p.Files = []profile.File{}
	}
	return p, info, true
}

// collect sums img's records and, with files, copies them.
func (r *Recorder) collect(img *imageRec, files bool) (Info, []fileRec) {
	now := r.now()
	r.mu.Lock()
	info := Info{Image: img.name, Starts: img.starts, LastStart: img.started, Meta: img.meta}
	recs := make([]*layerRec, 0, len(img.layers))
	for _, rec := range img.layers {
		recs = append(recs, rec)
	}
	for l := range r.layers {
		if w := l.cur.Load(); w != nil && w.img == img && !now.After(w.until) {
			info.Recording = true
		}
	}
	r.mu.Unlock()
	var out []fileRec
	for _, rec := range recs {
		rec.mu.Lock()
		info.Files += len(rec.files)
		info.Ranges += rec.ranges
		info.DroppedFiles += rec.droppedFiles
		info.DroppedRanges += rec.droppedRanges
		if files {
			for _, f := range rec.files {
				out = append(out, fileRec{seq: f.seq, path: f.path, ranges: slices.Clone(f.ranges)})
			}
		}
		rec.mu.Unlock()
	}
	return info, out
}
