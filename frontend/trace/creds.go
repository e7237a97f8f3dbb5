package trace

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Access to a tracee's /proc files (fd, fdinfo, maps, pagemap) takes
// PTRACE_MODE_READ_FSCREDS: the reader's fsuid and fsgid must equal the
// tracee's real, effective and saved ids, or the reader needs
// CAP_SYS_PTRACE, which a build step does not have. A start-up that drops
// privileges (gosu, su-exec, setpriv: root, then a service user) would
// hide its processes from a root tracer. So a root tracer's threads that
// read /proc files take, for each tracee, its ids as their fsuid and
// fsgid (setfsuid and setfsgid take CAP_SETUID and CAP_SETGID, which
// root has in the default set, and change only the calling thread: those
// threads stay locked). It changes no access the tracer could not make
// anyway, and only lowers what the thread may do with files.

// creds are the ids to read a process's /proc files with.
type creds struct {
	uid, gid int
	ok       bool
}

// credsOf returns the effective ids of a status (the check wants real,
// effective and saved ids equal; when they differ, nothing matches).
func credsOf(st procStatus) creds {
	if !st.ids {
		return creds{}
	}
	return creds{uid: st.uid[1], gid: st.gid[1], ok: true}
}

// readStatus reads /proc/TID/status (readable by anyone).
func readStatus(tid int) (procStatus, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return procStatus{}, false
	}
	return parseStatus(b)
}

// canSwitchFS: only root changes its fsuid to other ids.
var canSwitchFS = os.Geteuid() == 0

// fsState is the fsuid and fsgid of one locked thread.
type fsState struct{ uid, gid int }

func newFSState() fsState { return fsState{uid: os.Geteuid(), gid: os.Getegid()} }

// switchFS gives the calling thread, which must be locked, c's ids as its
// fsuid and fsgid.
func switchFS(cur *fsState, c creds) {
	if !canSwitchFS || !c.ok || cur.uid == c.uid && cur.gid == c.gid {
		return
	}
	// setfsuid and setfsgid report no error: read them back (-1 changes
	// nothing).
	_ = unix.Setfsgid(c.gid)
	_ = unix.Setfsuid(c.uid)
	if u, err := unix.SetfsuidRetUid(-1); err == nil {
		cur.uid = u
	}
	if g, err := unix.SetfsgidRetGid(-1); err == nil {
		cur.gid = g
	}
}
