package fdstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// systemdStore is the Store of systemd's file descriptor store.
type systemdStore struct {
	mu     sync.Mutex
	notify string // NOTIFY_SOCKET
	dir    string // records: dir/<name>
	kept   []Kept
}

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// Systemd returns the Store of systemd's file descriptor store, for a
// daemon run by systemd with $NOTIFY_SOCKET set: Put sends
// "FDSTORE=1\nFDNAME=<name>" with the descriptor to it (sd_notify), Remove
// "FDSTOREREMOVE=1\nFDNAME=<name>". The unit needs FileDescriptorStoreMax=
// at least the number of descriptors kept (systemd drops those past it),
// and FileDescriptorStorePreserve=yes to keep them across a stop too.
// Records are files in dir. systemd hands the kept descriptors back at
// the next start of the service (LISTEN_FDS, LISTEN_FDNAMES); those whose
// name starts with prefix and has a record are taken (Take), the others
// of prefix closed, and the rest left alone.
func Systemd(dir, prefix string) (Store, error) {
	notify := os.Getenv("NOTIFY_SOCKET")
	if notify == "" {
		return nil, errors.New("systemd fd store: NOTIFY_SOCKET is not set")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("systemd fd store: %w", err)
	}
	s := &systemdStore{notify: notify, dir: dir}
	s.kept = s.listen(prefix)
	return s, nil
}

// listen takes the descriptors systemd passed at this start.
func (s *systemdStore) listen(prefix string) []Kept {
	defer func() {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}()
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 || n > MaxEntries {
		return nil
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	var kept []Kept
	for i := range n {
		fd := listenFDsStart + i
		if i >= len(names) || !strings.HasPrefix(names[i], prefix) || checkEntry(names[i], nil) != nil {
			continue // not ours
		}
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), names[i])
		meta, err := os.ReadFile(filepath.Join(s.dir, names[i]))
		if err != nil || len(meta) > MaxMeta {
			f.Close()
			continue
		}
		kept = append(kept, Kept{Name: names[i], Meta: meta, File: f})
	}
	return kept
}

func (s *systemdStore) send(state string, f *os.File) error {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var oob []byte
	if f != nil {
		oob = syscall.UnixRights(int(f.Fd()))
	}
	// A leading '@' names an abstract socket; Go's SockaddrUnix maps it.
	return syscall.Sendmsg(fd, []byte(state), oob, &syscall.SockaddrUnix{Name: s.notify}, 0)
}

func (s *systemdStore) Put(name string, meta []byte, f *os.File) error {
	if err := checkEntry(name, meta); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := filepath.Join(s.dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, meta, 0o600); err != nil {
		return fmt.Errorf("systemd fd store: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("systemd fd store: %w", err)
	}
	// systemd keeps one entry per open file: a duplicate of a descriptor
	// it has (a resumed connection put again) is not added twice.
	if err := s.send("FDSTORE=1\nFDNAME="+name, f); err != nil {
		return fmt.Errorf("systemd fd store: put %s: %w", name, err)
	}
	return nil
}

func (s *systemdStore) Remove(name string) error {
	if err := checkEntry(name, nil); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.send("FDSTOREREMOVE=1\nFDNAME="+name, nil)
	if rerr := os.Remove(filepath.Join(s.dir, name)); rerr != nil && !os.IsNotExist(rerr) && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("systemd fd store: remove %s: %w", name, err)
	}
	return nil
}

func (s *systemdStore) Take() ([]Kept, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kept
	s.kept = nil
	return k, nil
}

func (s *systemdStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.kept {
		k.File.Close()
	}
	s.kept = nil
	return nil
}
