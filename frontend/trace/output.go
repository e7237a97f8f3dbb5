package trace

import (
	"bytes"
	"io"
	"sync"
)

// readyWatcher passes a stream of the command's output through, looking
// for the ready line: a line that contains the ready text. It matches as
// soon as the text is there, without waiting for the end of the line.
type readyWatcher struct {
	ready []byte
	once  *sync.Once
	found chan struct{} // closed at the first match (shared by stdout and stderr)
	tail  []byte        // end of the current line, enough to match across reads
}

// copy copies r to w until r ends, watching for the ready line. Errors
// writing w are ignored: the command's output is drained regardless.
func (rw *readyWatcher) copy(w io.Writer, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_, _ = w.Write(buf[:n]) // errors ignored: see above
			rw.scan(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func (rw *readyWatcher) scan(b []byte) {
	if len(rw.ready) == 0 {
		return
	}
	select {
	case <-rw.found:
		return
	default:
	}
	keep := len(rw.ready) - 1
	for len(b) > 0 {
		seg := b
		nl := bytes.IndexByte(b, '\n')
		if nl >= 0 {
			seg, b = b[:nl], b[nl+1:]
		} else {
			b = nil
		}
		// The current line is tail + seg; the tail holds no full match.
		joined := append(rw.tail, seg...)
		if bytes.Contains(joined, rw.ready) {
			rw.once.Do(func() { close(rw.found) })
			return
		}
		if nl >= 0 {
			rw.tail = rw.tail[:0] // a new line starts
			continue
		}
		if len(joined) > keep {
			joined = joined[len(joined)-keep:]
		}
		rw.tail = append(rw.tail[:0], joined...)
	}
}
