package trace

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// testprogSource is the synthetic start-up the tests trace. With DIR
// holding big (64 MiB), first.txt and last.txt it:
//
//	opens last.txt for writing (not an access); reads first.txt;
//	in three goroutines, each on a thread of its own: preads big's range
//	R1, lseeks and reads R2, maps big and touches the pages of M1 (kept
//	mapped) and of M2 (in a second mapping, unmapped at once);
//	runs itself again as "child", which preads R3, touches M3 and exits;
//	reads last.txt, writes its pid to DIR/pid, prints "ready" and sleeps.
//
// Mode "sleep" only sleeps; "exit N" exits with status N; "cat FILE"
// reads FILE and prints its size; "caps" prints its capabilities and
// seccomp mode; "drop UID CMD..." becomes UID and execs CMD. Without arguments, it writes the files
// into /data and execs itself on them (for a run in a FROM scratch image).
const testprogSource = `package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const MiB = 1 << 20

var (
	R1 = [2]int64{1*MiB + 100, 50000}
	R2 = [2]int64{20*MiB + 7, 100000}
	R3 = [2]int64{40 * MiB, 30000}
	M1 = [2]int64{32 * MiB, 256 << 10}
	M2 = [2]int64{48*MiB + 192<<10, 128 << 10}
	M3 = [2]int64{56 * MiB, 64 << 10}
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "testprog:", err)
		os.Exit(3)
	}
}

func pread(f *os.File, r [2]int64) {
	b := make([]byte, r[1])
	_, err := f.ReadAt(b, r[0])
	must(err)
}

var sink byte

// touch maps [off&^(1MiB-1), +len) of f and reads a byte of every page of r.
func touch(f *os.File, r [2]int64, unmap bool) {
	base := r[0] &^ (MiB - 1)
	size := int(r[0] + r[1] - base)
	m, err := syscall.Mmap(int(f.Fd()), base, size, syscall.PROT_READ, syscall.MAP_SHARED)
	must(err)
	for off := r[0] - base; off < r[0]-base+r[1]; off += 4096 {
		sink += m[off]
	}
	if unmap {
		must(syscall.Munmap(m))
	}
}

func setup() {
	must(os.MkdirAll("/data", 0o755))
	chunk := make([]byte, MiB)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	f, err := os.Create("/data/big")
	must(err)
	for i := 0; i < 64; i++ {
		_, err := f.Write(chunk)
		must(err)
	}
	must(f.Close())
	must(os.WriteFile("/data/first.txt", []byte("first\n"), 0o644))
	must(os.WriteFile("/data/last.txt", []byte("last\n"), 0o644))
	// Usable by any user, for runs as another user.
	for _, n := range []string{"/data", "/data/big", "/data/first.txt", "/data/last.txt"} {
		must(os.Chmod(n, 0o777))
	}
	self, err := os.Executable()
	must(err)
	must(syscall.Exec(self, []string{self, "/data", "main"}, os.Environ()))
}

func main() {
	if len(os.Args) < 3 {
		setup()
	}
	dir, mode := os.Args[1], os.Args[2]
	switch mode {
	case "sleep":
		time.Sleep(time.Hour)
		return
	case "exit":
		n, _ := strconv.Atoi(os.Args[3])
		os.Exit(n)
	case "drop":
		// drop UID CMD...: become UID (as gosu does), then exec CMD.
		id, err := strconv.Atoi(os.Args[3])
		must(err)
		must(syscall.Setgroups(nil))
		must(syscall.Setresgid(id, id, id))
		must(syscall.Setresuid(id, id, id))
		must(syscall.Exec(os.Args[4], os.Args[4:], os.Environ()))
	case "caps":
		b, err := os.ReadFile("/proc/self/status")
		must(err)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Cap") || strings.HasPrefix(l, "Seccomp") || strings.HasPrefix(l, "NoNewPrivs") {
				fmt.Println(l)
			}
		}
		return
	case "cat":
		b, err := os.ReadFile(os.Args[3])
		must(err)
		fmt.Println(os.Args[3], len(b), "bytes")
		return
	}
	if mode == "child" {
		f, err := os.Open(filepath.Join(dir, "big"))
		must(err)
		pread(f, R3)
		touch(f, M3, false)
		return
	}
	// Opened for writing only: not an access that counts.
	w, err := os.OpenFile(filepath.Join(dir, "last.txt"), os.O_WRONLY|os.O_APPEND, 0)
	must(err)
	must(w.Close())
	_, err = os.ReadFile(filepath.Join(dir, "first.txt"))
	must(err)
	f, err := os.Open(filepath.Join(dir, "big"))
	must(err)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			switch i {
			case 0:
				pread(f, R1)
			case 1:
				g, err := os.Open(filepath.Join(dir, "big"))
				must(err)
				_, err = g.Seek(R2[0], io.SeekStart)
				must(err)
				_, err = io.ReadFull(g, make([]byte, R2[1]))
				must(err)
			case 2:
				touch(f, M1, false)
				touch(f, M2, true)
			}
		}()
	}
	wg.Wait()
	cmd := exec.Command(os.Args[0], dir, "child")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	must(cmd.Run())
	_, err = os.ReadFile(filepath.Join(dir, "last.txt"))
	must(err)
	os.Remove(filepath.Join(dir, "pid")) // another user's, from an earlier run
	must(os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644))
	fmt.Println("starting: almost")
	fmt.Println("ready")
	time.Sleep(time.Hour)
}
`

const MiB = 1 << 20

// The known ranges of big, as in testprogSource.
var (
	knownReads = [][2]int64{{1*MiB + 100, 50000}, {20*MiB + 7, 100000}, {40 * MiB, 30000}}
	knownPages = [][2]int64{{32 * MiB, 256 << 10}, {48*MiB + 192<<10, 128 << 10}, {56 * MiB, 64 << 10}}
)

var (
	buildOnce sync.Once
	testprog  string
	buildErr  error
)

// buildTestprog builds testprogSource (static) once per test binary.
func buildTestprog(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "socikit-trace-testprog-")
		if err != nil {
			buildErr = err
			return
		}
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(testprogSource), 0o644); err != nil {
			buildErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module testprog\n\ngo 1.22\n"), 0o644); err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", "testprog", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err, string(out)}
			return
		}
		testprog = filepath.Join(dir, "testprog")
	})
	if buildErr != nil {
		t.Fatalf("build the test program: %v", buildErr)
	}
	return testprog
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}
