package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Mode is how progress is shown.
type Mode int

const (
	// Auto is Bars when the output is a terminal, else Plain.
	Auto Mode = iota
	// Bars draws a bar per item in progress, finished items as lines
	// above them.
	Bars
	// Plain writes a line per finished item.
	Plain
	// Quiet writes warnings only.
	Quiet
)

var modeNames = [...]string{Auto: "auto", Bars: "tty", Plain: "plain", Quiet: "quiet"}

// String returns the mode's flag value.
func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses a flag value: auto, tty, plain or quiet (the values of
// docker buildx --progress).
func ParseMode(s string) (Mode, error) {
	for m, n := range modeNames {
		if n == s {
			return Mode(m), nil
		}
	}
	return 0, fmt.Errorf("progress mode %q: want auto, tty, plain or quiet", s)
}

// Set implements flag.Value.
func (m *Mode) Set(s string) error {
	v, err := ParseMode(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// IsTerminal reports whether w is a terminal with columns to draw bars in
// (a pseudo-terminal of zero columns, as script(1) without a terminal
// makes, is not).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	return err == nil && cols > 0
}

// Progress shows the progress of one command. Its methods are safe for
// concurrent use. Wait ends it.
type Progress struct {
	w    io.Writer
	mode Mode // Bars, Plain or Quiet
	bars *mpb.Progress

	mu    sync.Mutex
	items []*Item
	wmu   sync.Mutex // serializes writes to w
}

// New returns a Progress writing to w (stderr) in mode m; Auto is resolved
// with IsTerminal(w).
func New(w io.Writer, m Mode) *Progress {
	if m == Auto {
		m = Plain
		if IsTerminal(w) {
			m = Bars
		}
	}
	p := &Progress{w: w, mode: m}
	if m == Bars {
		p.bars = mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithAutoRefresh())
	}
	return p
}

// Mode returns the mode in effect: Bars, Plain or Quiet.
func (p *Progress) Mode() Mode { return p.mode }

// Printf writes a progress line (above the bars; none when Quiet).
func (p *Progress) Printf(format string, args ...any) {
	if p.mode == Quiet {
		return
	}
	p.write(fmt.Sprintf(format+"\n", args...))
}

// Warnf writes a line in every mode (above the bars).
func (p *Progress) Warnf(format string, args ...any) {
	p.write(fmt.Sprintf(format+"\n", args...))
}

func (p *Progress) write(s string) {
	if p.bars != nil {
		if _, err := p.bars.Write([]byte(s)); err == nil {
			return
		}
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	// Best effort, like the bars: a failed progress write has nowhere to
	// be reported.
	_, _ = io.WriteString(p.w, s)
}

// Item is one unit of work of a known size (a layer).
type Item struct {
	p    *Progress
	name string
	bar  *mpb.Bar // Bars only

	cur atomic.Int64

	mu   sync.Mutex
	done bool
}

// Add starts an item of total bytes (0 or less: unknown).
func (p *Progress) Add(name string, total int64) *Item {
	it := &Item{p: p, name: name}
	if p.bars != nil {
		it.bar = p.bars.AddBar(max(total, 0),
			mpb.BarRemoveOnComplete(),
			mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace), decor.Percentage(decor.WCSyncSpace)))
	}
	p.mu.Lock()
	p.items = append(p.items, it)
	p.mu.Unlock()
	return it
}

// SetCurrent sets the bytes done so far (it may go back, for a retry).
func (it *Item) SetCurrent(n int64) {
	it.cur.Store(n)
	if it.bar != nil {
		it.bar.SetCurrent(n)
	}
}

// Current returns the bytes done so far (SetCurrent).
func (it *Item) Current() int64 { return it.cur.Load() }

// Done finishes the item: its bar goes and "NAME: MESSAGE" is written
// (none when Quiet).
func (it *Item) Done(format string, args ...any) {
	if !it.finish() {
		return
	}
	if it.bar != nil {
		it.bar.SetTotal(-1, true)
	}
	it.p.Printf("%s: %s", it.name, fmt.Sprintf(format, args...))
}

// Abort drops the item's bar without a line (the work failed or was
// cancelled; the error is reported elsewhere).
func (it *Item) Abort() {
	if it.finish() && it.bar != nil {
		it.bar.Abort(true)
	}
}

func (it *Item) finish() bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.done {
		return false
	}
	it.done = true
	return true
}

// Wait aborts the items not done and ends the bars. Call it once, when
// the work has ended; Printf and Warnf write directly afterwards.
func (p *Progress) Wait() {
	p.mu.Lock()
	items := p.items
	p.items = nil
	p.mu.Unlock()
	for _, it := range items {
		it.Abort()
	}
	if p.bars != nil {
		p.bars.Wait()
		p.bars = nil
	}
}
