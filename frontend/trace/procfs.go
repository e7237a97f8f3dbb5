package trace

import (
	"bytes"
	"strconv"
	"strings"
)

// Parsers of the /proc files the tracer reads. The kernel writes them, but
// the paths in them are chosen by the traced program (any file name, with
// spaces, "(deleted)" or a newline written as \012): the parsers never
// panic, skip what they do not understand and cap what they return.

// mapping is one line of /proc/PID/maps.
type mapping struct {
	start, end uint64 // virtual addresses [start, end)
	offset     uint64 // file offset of start
	inode      uint64
	path       string // "" for an anonymous mapping; "[heap]" and the like as is
	deleted    bool   // path ended with " (deleted)" (removed from path)
}

// file tells whether m maps a file by path (not anonymous, not [heap],
// [stack], [vdso], not memfd or SysV shared memory, not deleted).
func (m *mapping) file() bool {
	return m.inode != 0 && !m.deleted && strings.HasPrefix(m.path, "/")
}

// maxMappings caps the mappings parseMaps returns (the kernel's own limit,
// vm.max_map_count, is 65530 by default).
const maxMappings = 1 << 20

// parseMaps parses /proc/PID/maps:
//
//	7f2c1a000000-7f2c1a028000 r--p 00000000 08:01 1234     /usr/lib/x86_64-linux-gnu/libc.so.6
//
// Lines it cannot parse are skipped. dst is reused.
func parseMaps(b []byte, dst []mapping) []mapping {
	dst = dst[:0]
	for len(b) > 0 && len(dst) < maxMappings {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if m, ok := parseMapsLine(line); ok {
			dst = append(dst, m)
		}
	}
	return dst
}

func parseMapsLine(line []byte) (mapping, bool) {
	var m mapping
	field := func() []byte {
		line = bytes.TrimLeft(line, " ")
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			f := line
			line = nil
			return f
		}
		f := line[:i]
		line = line[i+1:]
		return f
	}
	addr := field()
	lo, hi, ok := bytes.Cut(addr, []byte{'-'})
	if !ok {
		return m, false
	}
	var err error
	if m.start, err = strconv.ParseUint(string(lo), 16, 64); err != nil {
		return m, false
	}
	if m.end, err = strconv.ParseUint(string(hi), 16, 64); err != nil || m.end < m.start {
		return m, false
	}
	if perms := field(); len(perms) != 4 {
		return m, false
	}
	if m.offset, err = strconv.ParseUint(string(field()), 16, 64); err != nil {
		return m, false
	}
	if dev := field(); bytes.IndexByte(dev, ':') < 0 {
		return m, false
	}
	if m.inode, err = strconv.ParseUint(string(field()), 10, 64); err != nil {
		return m, false
	}
	p := string(bytes.TrimLeft(line, " "))
	if strings.HasSuffix(p, " (deleted)") {
		m.deleted = true
		p = strings.TrimSuffix(p, " (deleted)")
	}
	// seq_path escapes a newline in a path as \012.
	if strings.Contains(p, `\012`) {
		p = strings.ReplaceAll(p, `\012`, "\n")
	}
	m.path = p
	return m, true
}

// parseFdinfo returns the "pos:" (file position) and, from Linux 5.14
// on, the "ino:" fields of /proc/PID/fdinfo/FD.
func parseFdinfo(b []byte) (pos int64, ino uint64, hasIno, ok bool) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, found := bytes.Cut(line, []byte{':'})
		if !found {
			continue
		}
		v = bytes.TrimSpace(v)
		switch string(k) {
		case "pos":
			p, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || p < 0 {
				return 0, 0, false, false
			}
			pos, ok = p, true
		case "ino":
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err == nil {
				ino, hasIno = n, true
			}
		}
	}
	return pos, ino, hasIno, ok
}

// procStatus is what the tracer reads of /proc/PID/status.
type procStatus struct {
	tgid int
	// uid and gid are the real, effective and saved ids.
	uid, gid [3]int
	ids      bool // Uid and Gid were there
}

// parseStatus parses the Tgid, Uid and Gid lines of /proc/PID/status.
func parseStatus(b []byte) (procStatus, bool) {
	var st procStatus
	var hasUid, hasGid bool
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, found := bytes.Cut(line, []byte{':'})
		if !found {
			continue
		}
		switch string(k) {
		case "Tgid":
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil || n <= 0 {
				return st, false
			}
			st.tgid = n
		case "Uid":
			hasUid = parseIDs(v, &st.uid)
		case "Gid":
			hasGid = parseIDs(v, &st.gid)
		}
	}
	st.ids = hasUid && hasGid
	return st, st.tgid > 0
}

// parseIDs reads the first three of the four ids of a Uid or Gid line.
func parseIDs(v []byte, dst *[3]int) bool {
	f := bytes.Fields(v)
	if len(f) < 3 {
		return false
	}
	for i := range dst {
		n, err := strconv.Atoi(string(f[i]))
		if err != nil || n < 0 {
			return false
		}
		dst[i] = n
	}
	return true
}

// Bits of a /proc/PID/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
// The PFN bits are zero without CAP_SYS_ADMIN; these are always there.
const (
	pagemapPresent = 1 << 63
	pagemapSwapped = 1 << 62
)
