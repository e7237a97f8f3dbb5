package fs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
)

// bytesReader is a Reader safe for concurrent use (memReader counts).
type bytesReader struct{ r *bytes.Reader }

func (b bytesReader) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return b.r.ReadAt(p, off)
}

// resumeChildEnv names the mountpoint of TestResumeHelperProcess.
const resumeChildEnv = "SOCIKIT_FS_RESUME_CHILD"

// resumeFS is the layer of the resume tests: the same tree in the child
// and in the test.
func resumeFS(t *testing.T, opts ...Option) (*FS, []fstest.Entry) {
	entries := fstest.Tricky("resume", 100<<10)
	z, tb := build(t, entries)
	f, err := New(z, bytesReader{bytes.NewReader(tb)}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f, entries
}

// TestResumeHelperProcess is the daemon of TestResume, run as a child
// process: it mounts the layer, sends the kept connection (descriptor and
// state) over fd 3 and serves until it is killed.
func TestResumeHelperProcess(t *testing.T) {
	dir := os.Getenv(resumeChildEnv)
	if dir == "" {
		t.Skip("the child process of TestResume")
	}
	f, _ := resumeFS(t)
	m, err := f.Mount(dir)
	if err != nil {
		t.Fatal(err)
	}
	fd, st, err := m.Keep()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.FileConn(os.NewFile(3, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.(*net.UnixConn).WriteMsgUnix(st, syscall.UnixRights(int(fd.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	select {} // served until SIGKILL
}

// syncBuffer collects go-fuse's log (a panic in the bridge is logged and
// answered EIO; a FORGET has no answer).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// uncache drops the kernel's cached pages of a file or directory of the
// mount (a directory's cached listing: FOPEN_CACHE_DIR), so that the next
// read asks the server.
func uncache(t *testing.T, f *os.File) {
	t.Helper()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("fadvise %s: %v", f.Name(), err)
	}
}

// TestResume: a layer mounted and served by a child process, which keeps
// a descriptor of the /dev/fuse connection and hands it over; the child
// is killed with SIGKILL while the test has a directory open and files
// looked up; a read started while no server runs waits in the kernel; a
// new server resumes the connection (no mount, no INIT): the waiting read
// completes, files known and new read right, the open directory handle of
// the dead server lists the rest of the directory, FORGETs of the dead
// server's ids are taken, and the mount unmounts.
func TestResume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	var logs syncBuffer
	log.SetOutput(&logs)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })

	dir := t.TempDir()
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	_, entries := resumeFS(t)
	want := fstest.Final(entries)

	// The child: mounts, sends the kept connection.
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	parent, child := os.NewFile(uintptr(pair[0]), "parent"), os.NewFile(uintptr(pair[1]), "child")
	defer parent.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestResumeHelperProcess$")
	cmd.Env = append(os.Environ(), resumeChildEnv+"="+dir)
	cmd.ExtraFiles = []*os.File{child}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	c, err := net.FileConn(parent)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	if err := uc.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, maxResumeState), make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("receive the kept connection: %v", err)
	}
	state := buf[:n]
	cmsgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) != 1 {
		t.Fatalf("control messages %v: %v", cmsgs, err)
	}
	fds, err := syscall.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights %v: %v", fds, err)
	}
	kept := os.NewFile(uintptr(fds[0]), "/dev/fuse")
	defer kept.Close()

	check := func(name string) {
		t.Helper()
		fh, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		defer fh.Close()
		uncache(t, fh)
		got, err := io.ReadAll(fh)
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		if !bytes.Equal(got, want[name].Data) {
			t.Fatalf("%s: %d bytes differ from the layer's %d", name, len(got), len(want[name].Data))
		}
	}
	// The dead server's ids and handles: files looked up and read, a
	// directory open and half listed.
	for i := range 20 {
		check(fmt.Sprintf("many/f%03d", i))
	}
	check("a/file")
	d, err := os.Open(filepath.Join(dir, "many"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// getdents with a small buffer: a few entries now, the rest later
	// through the same handle (os.File would read them all at once).
	getdents := func() []string {
		t.Helper()
		buf := make([]byte, 256)
		n, err := syscall.Getdents(int(d.Fd()), buf)
		if err != nil {
			t.Fatalf("getdents: %v", err)
		}
		_, _, names := syscall.ParseDirent(buf[:n], -1, nil)
		if n > 0 && len(names) == 0 {
			names = []string{"."} // only . and ..: not the end yet
		}
		return names
	}
	first := getdents()
	if len(first) == 0 || len(first) > 20 {
		t.Fatalf("first getdents: %d names", len(first))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true

	// A read while no server runs waits in the kernel's queue.
	waiting := fuseWaiting(t, st.Dev)
	type result struct {
		b   []byte
		err error
	}
	queued := make(chan result, 1)
	go func() {
		b, err := os.ReadFile(filepath.Join(dir, "implicit/deep/file"))
		queued <- result{b, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for waiting() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the read never reached the connection's queue")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case r := <-queued:
		t.Fatalf("read done with no server: %d bytes, %v", len(r.b), r.err)
	default:
	}

	var ops OpCounters
	f, _ := resumeFS(t, WithOpCounters(&ops))
	m, err := f.Resume(dir, kept, state)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-queued:
		if r.err != nil || !bytes.Equal(r.b, want["implicit/deep/file"].Data) {
			t.Fatalf("the read queued before the resume: %d bytes, %v", len(r.b), r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the queued read did not finish after the resume")
	}

	// Reads come to the new server with the dead server's node ids (the
	// kernel's cached pages dropped), and the open directory's listing
	// is read again through the dead server's handle.
	for i := range 40 {
		check(fmt.Sprintf("many/f%03d", i))
	}
	check("a/file")
	check("a/big")
	check(fstest.LongName)
	uncache(t, d)
	var rest []string
	for {
		names := getdents()
		if len(names) == 0 {
			break
		}
		rest = append(rest, names...)
	}
	var names []string
	for p := range want {
		if strings.HasPrefix(p, "many/") {
			names = append(names, strings.TrimPrefix(p, "many/"))
		}
	}
	got := slices.DeleteFunc(append(first, rest...), func(s string) bool { return s == "." })
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Fatalf("listing through the dead server's handle: %d names %v, want %d", len(got), got, len(names))
	}
	if err := d.Close(); err != nil { // RELEASEDIR of a handle the new server never gave
		t.Fatal(err)
	}
	if n := ops.Count(OpReaddir) + ops.Count(OpReaddirplus); n == 0 {
		t.Error("the listing came from the kernel's cache, not through the dead server's handle")
	}
	// The kernel's entries go: FORGETs of ids the new server never
	// counted (or counted fewer lookups of).
	many := f.root.child("many")
	for _, name := range names {
		if st := m.srv.EntryNotify(many.ino, name); !st.Ok() {
			t.Fatalf("invalidate many/%s: %v", name, st)
		}
	}
	if st := m.srv.EntryNotify(1, "a"); !st.Ok() {
		t.Fatalf("invalidate a: %v", st)
	}
	deadline = time.Now().Add(10 * time.Second)
	for ops.Count(OpForget) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no FORGET after the entries were invalidated")
		}
		time.Sleep(time.Millisecond)
	}
	check("many/f039")
	check("a/file")
	check("dup")

	if err := f.Err(); err != nil {
		t.Errorf("filesystem error: %v", err)
	}
	// The resumed mount is kept again, one server further.
	fd2, state2, err := m.Keep()
	if err != nil {
		t.Fatal(err)
	}
	fd2.Close()
	if st, _, err := parseResumeState(state2); err != nil || st.Gen != 1 {
		t.Fatalf("state of the resumed mount: gen %d, %v", st.Gen, err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	if s := logs.String(); strings.Contains(s, "panic") || strings.Contains(s, "unknown") {
		t.Errorf("go-fuse logged:\n%s", s)
	}
}

// fuseWaiting returns a function reading the number of requests waiting
// for an answer on the FUSE connection of device dev (fusectl, mounted
// here if it is not).
func fuseWaiting(t *testing.T, dev uint64) func() int {
	t.Helper()
	const ctl = "/sys/fs/fuse/connections"
	p := filepath.Join(ctl, fmt.Sprint(unix.Minor(dev)), "waiting")
	if _, err := os.Stat(p); err != nil {
		if err := syscall.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			t.Fatalf("mount fusectl: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(ctl, 0) })
	}
	return func() int {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		var n int
		if _, err := fmt.Sscan(string(b), &n); err != nil {
			t.Fatalf("%s: %q: %v", p, b, err)
		}
		return n
	}
}
