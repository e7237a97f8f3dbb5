// Package version is the version every socikit binary prints with
// --version: the module version and the commit, set at build time with
//
//	-ldflags "-X github.com/socikit/socikit/internal/version.Version=v0.1.0 -X github.com/socikit/socikit/internal/version.Commit=abc123"
//
// and otherwise read from the binary's build information.
package version

import (
	"runtime/debug"
)

// Set at build time (-ldflags -X); empty means "from build info".
var (
	Version string
	Commit  string
)

// String is "VERSION (commit COMMIT)".
func String() string {
	v, c := Version, Commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	}
	if len(c) > 12 {
		c = c[:12]
	}
	return v + " (commit " + c + ")"
}
