package fdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The holder's protocol: one unix SOCK_SEQPACKET connection per client,
// one JSON message per request and per reply, descriptors as SCM_RIGHTS.
//
//	put    {"op":"put","name":N,"meta":M} + 1 fd  -> {}  (or {"error":...})
//	remove {"op":"remove","name":N}               -> {}
//	list   {"op":"list"}                          -> {"name":N,"meta":M} + 1 fd, per entry, then {"end":true}
type request struct {
	Op   string `json:"op"`
	Name string `json:"name,omitempty"`
	Meta []byte `json:"meta,omitempty"`
}

type reply struct {
	Error string `json:"error,omitempty"`
	Name  string `json:"name,omitempty"`
	Meta  []byte `json:"meta,omitempty"`
	End   bool   `json:"end,omitempty"`
}

// errEOF is readMsg's end of a connection.
var errEOF = errors.New("connection closed")

// maxMessage bounds a message (a record is at most MaxMeta bytes, base64
// in JSON).
const maxMessage = 64 << 10

// oobSize has room for a few descriptors, so that a message carrying more
// than one is seen (and its descriptors closed) rather than truncated.
var oobSize = syscall.CmsgSpace(4 * 4)

// readMsg reads one message and the descriptors that came with it. On
// error, received descriptors are closed.
func readMsg(c *net.UnixConn, v any) ([]*os.File, error) {
	buf, oob := make([]byte, maxMessage), make([]byte, oobSize)
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	if oobn > 0 {
		cmsgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("parse control message: %w", err)
		}
		for i := range cmsgs {
			fds, err := syscall.ParseUnixRights(&cmsgs[i])
			if err != nil {
				continue
			}
			for _, fd := range fds {
				syscall.CloseOnExec(fd)
				files = append(files, os.NewFile(uintptr(fd), "kept"))
			}
		}
	}
	fail := func(err error) ([]*os.File, error) {
		closeAll(files)
		return nil, err
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		return fail(errors.New("message truncated"))
	}
	if n == 0 {
		return fail(errEOF) // SOCK_SEQPACKET: the peer closed
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		return fail(fmt.Errorf("parse message: %w", err))
	}
	return files, nil
}

func writeMsg(c *net.UnixConn, v any, f *os.File) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var oob []byte
	if f != nil {
		oob = syscall.UnixRights(int(f.Fd()))
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// holder is the state of Serve.
type holder struct {
	mu      sync.Mutex
	entries map[string]holderEntry
	clients int
	served  bool          // a client came once
	done    chan struct{} // closed when the holder has nothing to do
}

type holderEntry struct {
	meta []byte
	f    *os.File
}

// ServeOptions configure Serve.
type ServeOptions struct {
	// FirstClient is how long Serve waits for its first client before
	// it exits (0: a minute).
	FirstClient time.Duration
}

// Serve runs a holder on l: it keeps what its clients put until they
// remove it. It returns when ctx is done, when it keeps nothing and its
// last client has gone, or when no client came within
// opts.FirstClient. Whatever it keeps when it returns is closed.
func Serve(ctx context.Context, l *net.UnixListener, opts ServeOptions) error {
	if opts.FirstClient <= 0 {
		opts.FirstClient = time.Minute
	}
	h := &holder{entries: map[string]holderEntry{}, done: make(chan struct{})}
	var wg sync.WaitGroup
	conns := make(chan *net.UnixConn)
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	first := time.NewTimer(opts.FirstClient)
	defer first.Stop()
	var open []*net.UnixConn
	defer func() {
		l.Close()
		for _, c := range open {
			c.Close()
		}
		wg.Wait()
		h.mu.Lock()
		for n, e := range h.entries {
			e.f.Close()
			delete(h.entries, n)
		}
		h.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.done:
			return nil
		case <-first.C:
			h.mu.Lock()
			idle := !h.served
			h.mu.Unlock()
			if idle {
				return nil
			}
		case c, ok := <-conns:
			if !ok {
				return errors.New("fd holder: accept failed")
			}
			h.mu.Lock()
			h.clients++
			h.served = true
			h.mu.Unlock()
			open = append(open, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.serve(c)
			}()
		}
	}
}

// serve answers one client's requests until it goes.
func (h *holder) serve(c *net.UnixConn) {
	defer func() {
		c.Close()
		h.mu.Lock()
		h.clients--
		if h.clients == 0 && len(h.entries) == 0 {
			select {
			case <-h.done:
			default:
				close(h.done)
			}
		}
		h.mu.Unlock()
	}()
	for {
		var req request
		files, err := readMsg(c, &req)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, errEOF) || errors.Is(err, io.EOF) {
				return
			}
			if writeMsg(c, reply{Error: err.Error()}, nil) != nil {
				return
			}
			continue
		}
		if err := h.handle(c, req, files); err != nil {
			return
		}
	}
}

// handle answers req; an error means the connection failed.
func (h *holder) handle(c *net.UnixConn, req request, files []*os.File) error {
	if req.Op != "put" {
		closeAll(files)
		files = nil
	}
	switch req.Op {
	case "put":
		if len(files) != 1 {
			closeAll(files)
			return writeMsg(c, reply{Error: fmt.Sprintf("put %q: %d descriptors, want 1", req.Name, len(files))}, nil)
		}
		if err := checkEntry(req.Name, req.Meta); err != nil {
			files[0].Close()
			return writeMsg(c, reply{Error: err.Error()}, nil)
		}
		h.mu.Lock()
		old, had := h.entries[req.Name]
		if !had && len(h.entries) >= MaxEntries {
			h.mu.Unlock()
			files[0].Close()
			return writeMsg(c, reply{Error: fmt.Sprintf("put %q: %d descriptors kept already", req.Name, MaxEntries)}, nil)
		}
		h.entries[req.Name] = holderEntry{meta: req.Meta, f: files[0]}
		h.mu.Unlock()
		if had {
			old.f.Close()
		}
		return writeMsg(c, reply{}, nil)
	case "remove":
		h.mu.Lock()
		old, had := h.entries[req.Name]
		delete(h.entries, req.Name)
		h.mu.Unlock()
		if had {
			old.f.Close()
		}
		return writeMsg(c, reply{}, nil)
	case "list":
		h.mu.Lock()
		names := make([]string, 0, len(h.entries))
		for n := range h.entries {
			names = append(names, n)
		}
		slices.Sort(names)
		// Duplicates, so that a concurrent remove cannot close a
		// descriptor being sent.
		var list []holderEntry
		for _, n := range names {
			if d, err := dup(h.entries[n].f); err == nil {
				list = append(list, holderEntry{meta: h.entries[n].meta, f: d})
			} else {
				names = slices.DeleteFunc(names, func(s string) bool { return s == n })
			}
		}
		h.mu.Unlock()
		defer func() {
			for _, e := range list {
				e.f.Close()
			}
		}()
		for i, e := range list {
			if err := writeMsg(c, reply{Name: names[i], Meta: e.meta}, e.f); err != nil {
				return err
			}
		}
		return writeMsg(c, reply{End: true}, nil)
	default:
		return writeMsg(c, reply{Error: fmt.Sprintf("unknown op %q", req.Op)}, nil)
	}
}

func dup(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// holderClient is the Store of a holder process.
type holderClient struct {
	mu     sync.Mutex
	c      *net.UnixConn
	kept   []Kept
	closed bool
}

// Holder connects to the holder serving socket, starting one with start
// if none answers (start must not wait for it: Holder polls the socket),
// and takes the list of what it keeps (Take).
func Holder(socket string, start func() error) (Store, error) {
	c, err := dialHolder(socket)
	if err != nil && start != nil {
		if serr := start(); serr != nil {
			return nil, fmt.Errorf("start fd holder: %w", serr)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, err = dialHolder(socket); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connect to fd holder %s: %w", socket, err)
	}
	hc := &holderClient{c: c}
	if hc.kept, err = hc.list(); err != nil {
		c.Close()
		return nil, fmt.Errorf("fd holder %s: list: %w", socket, err)
	}
	return hc, nil
}

func dialHolder(socket string) (*net.UnixConn, error) {
	return net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: socket, Net: "unixpacket"})
}

// call sends req (with f) and reads the reply. The caller holds mu.
func (hc *holderClient) call(req request, f *os.File) (reply, error) {
	if hc.closed {
		return reply{}, errClosed
	}
	if err := writeMsg(hc.c, req, f); err != nil {
		return reply{}, err
	}
	var r reply
	files, err := readMsg(hc.c, &r)
	closeAll(files)
	if err != nil {
		return reply{}, err
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

func (hc *holderClient) Put(name string, meta []byte, f *os.File) error {
	if err := checkEntry(name, meta); err != nil {
		return err
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if _, err := hc.call(request{Op: "put", Name: name, Meta: meta}, f); err != nil {
		return fmt.Errorf("fd holder: put %s: %w", name, err)
	}
	return nil
}

func (hc *holderClient) Remove(name string) error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if _, err := hc.call(request{Op: "remove", Name: name}, nil); err != nil {
		return fmt.Errorf("fd holder: remove %s: %w", name, err)
	}
	return nil
}

func (hc *holderClient) list() ([]Kept, error) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if err := writeMsg(hc.c, request{Op: "list"}, nil); err != nil {
		return nil, err
	}
	var kept []Kept
	for {
		var r reply
		files, err := readMsg(hc.c, &r)
		if err == nil && r.Error != "" {
			err = errors.New(r.Error)
		}
		if err == nil && !r.End && len(files) != 1 {
			err = fmt.Errorf("entry %q with %d descriptors", r.Name, len(files))
		}
		if err != nil {
			closeAll(files)
			for _, k := range kept {
				k.File.Close()
			}
			return nil, err
		}
		if r.End {
			closeAll(files)
			return kept, nil
		}
		kept = append(kept, Kept{Name: r.Name, Meta: r.Meta, File: files[0]})
	}
}

func (hc *holderClient) Take() ([]Kept, error) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	k := hc.kept
	hc.kept = nil
	return k, nil
}

func (hc *holderClient) Close() error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.closed {
		return nil
	}
	hc.closed = true
	for _, k := range hc.kept {
		k.File.Close()
	}
	hc.kept = nil
	return hc.c.Close()
}

// StartHolder starts argv (a command running Serve on the socket) as a
// process of its own session, so that it outlives the caller and a kill
// of the caller's process group, with stdout and stderr appended to
// logPath. It does not wait for it to serve (Holder polls).
func StartHolder(argv []string, logPath string) error {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }() // reaped if it exits while we run
	return nil
}
