package fdstore

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func startHolder(t *testing.T, opts ServeOptions) (string, chan error) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "h.sock")
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, exited := make(chan error, 1), make(chan struct{})
	go func() {
		done <- Serve(ctx, l, opts)
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	return sock, done
}

// sameFile reports whether a and b are the same open file (their
// inode).
func sameFile(t *testing.T, a, b *os.File) bool {
	t.Helper()
	var sa, sb syscall.Stat_t
	if err := syscall.Fstat(int(a.Fd()), &sa); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fstat(int(b.Fd()), &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// TestHolder: descriptors put are kept after the client goes, a new
// client takes them (same files, with their records), a put replaces, a
// remove closes, and the descriptor count returns to where it was.
func TestHolder(t *testing.T) {
	sock, done := startHolder(t, ServeOptions{})
	base := openFDs(t)
	dir := t.TempDir()
	var files []*os.File
	for _, n := range []string{"a", "b", "c"} {
		f, err := os.Create(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	s, err := Holder(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := s.Take(); len(k) != 0 {
		t.Fatalf("new holder keeps %d", len(k))
	}
	for i, f := range files {
		if err := s.Put("fd-"+f.Name()[len(dir)+1:], []byte{byte(i)}, f); err != nil {
			t.Fatal(err)
		}
	}
	// Replaced: "fd-a" now keeps file c.
	if err := s.Put("fd-a", []byte("again"), files[2]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, f := range files {
		f.Close()
	}
	select {
	case err := <-done:
		t.Fatalf("holder exited while keeping descriptors: %v", err)
	default:
	}

	s2, err := Holder(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := s2.Take()
	if len(kept) != 3 || kept[0].Name != "fd-a" || kept[1].Name != "fd-b" || kept[2].Name != "fd-c" {
		t.Fatalf("kept %v", kept)
	}
	if string(kept[0].Meta) != "again" || kept[1].Meta[0] != 1 {
		t.Fatalf("records %q %q", kept[0].Meta, kept[1].Meta)
	}
	c, _ := os.Open(filepath.Join(dir, "c"))
	defer c.Close()
	if !sameFile(t, kept[0].File, c) || !sameFile(t, kept[2].File, c) || sameFile(t, kept[1].File, c) {
		t.Fatal("kept descriptors are not the files put")
	}
	for _, k := range kept {
		k.File.Close()
	}
	for _, n := range []string{"fd-a", "fd-b", "fd-c", "fd-none"} {
		if err := s2.Remove(n); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if got := openFDs(t); got != base+2 { // s2's connection, both ends (the holder runs in this process)
		t.Errorf("%d descriptors open after the removes, want %d", got, base+2)
	}
	s2.Close()
	// Nothing kept, no client: the holder exits.
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("holder still running with nothing kept and no client")
	}
	if got := openFDs(t); got != base-1 { // the listener is closed too
		t.Errorf("%d descriptors open after the holder exited, want %d", got, base-1)
	}
}

// TestHolderBadRequests: requests the holder refuses get an error and
// leave nothing open.
func TestHolderBadRequests(t *testing.T) {
	sock, _ := startHolder(t, ServeOptions{})
	c, err := dialHolder(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Keep the holder from exiting between the cases.
	s, err := Holder(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := openFDs(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	two := append(syscall.UnixRights(int(f.Fd())), syscall.UnixRights(int(f.Fd()))...)
	put := func(name string) []byte {
		b, _ := json.Marshal(request{Op: "put", Name: name})
		return b
	}
	for _, tc := range []struct {
		name string
		msg  []byte
		oob  []byte
		want string
	}{
		{"no fd", put("x"), nil, "0 descriptors"},
		{"two fds", put("x"), two, "2 descriptors"},
		{"bad name", put("a:b"), syscall.UnixRights(int(f.Fd())), "printable ASCII"},
		{"long name", put(strings.Repeat("n", MaxName+1)), syscall.UnixRights(int(f.Fd())), "fd name of"},
		{"not json", []byte("{"), syscall.UnixRights(int(f.Fd())), "parse message"},
		{"unknown op", []byte(`{"op":"steal"}`), syscall.UnixRights(int(f.Fd())), "unknown op"},
	} {
		if _, _, err := c.WriteMsgUnix(tc.msg, tc.oob, nil); err != nil {
			t.Fatal(err)
		}
		var r reply
		files, err := readMsg(c, &r)
		if err != nil || len(files) != 0 {
			t.Fatalf("%s: %v, %d files", tc.name, err, len(files))
		}
		if !strings.Contains(r.Error, tc.want) {
			t.Errorf("%s: error %q, want %q", tc.name, r.Error, tc.want)
		}
	}
	if got := openFDs(t); got != base+1 { // f
		t.Errorf("%d descriptors open after refused requests, want %d", got, base+1)
	}
	if k, _ := s.Take(); len(k) != 0 {
		t.Errorf("kept %v", k)
	}
}

// TestHolderFirstClient: a holder no client reaches exits.
func TestHolderFirstClient(t *testing.T) {
	_, done := startHolder(t, ServeOptions{FirstClient: 50 * time.Millisecond})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("holder without clients still running")
	}
}

// TestSystemd: Put and Remove send systemd's FDSTORE messages to
// $NOTIFY_SOCKET, the descriptor with the first, and keep the record.
func TestSystemd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	s, err := Systemd(filepath.Join(dir, "records"), "socikit-")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recv := func() (string, int) {
		buf, oob := make([]byte, 512), make([]byte, syscall.CmsgSpace(4))
		n, oobn, _, _, err := l.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		fds := 0
		if oobn > 0 {
			cm, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			got, _ := syscall.ParseUnixRights(&cm[0])
			for _, fd := range got {
				syscall.Close(fd)
			}
			fds = len(got)
		}
		return string(buf[:n]), fds
	}
	if err := s.Put("socikit-x", []byte("rec"), f); err != nil {
		t.Fatal(err)
	}
	if msg, fds := recv(); msg != "FDSTORE=1\nFDNAME=socikit-x" || fds != 1 {
		t.Fatalf("put sent %q with %d fds", msg, fds)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "records", "socikit-x")); err != nil || string(b) != "rec" {
		t.Fatalf("record %q, %v", b, err)
	}
	if err := s.Remove("socikit-x"); err != nil {
		t.Fatal(err)
	}
	if msg, fds := recv(); msg != "FDSTOREREMOVE=1\nFDNAME=socikit-x" || fds != 0 {
		t.Fatalf("remove sent %q with %d fds", msg, fds)
	}
	if _, err := os.Stat(filepath.Join(dir, "records", "socikit-x")); !os.IsNotExist(err) {
		t.Fatalf("record left: %v", err)
	}
}
