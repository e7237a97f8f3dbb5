// Package depcheck lets a package's tests assert which modules it may not
// depend on, directly or through other packages.
package depcheck

import (
	"fmt"
	"os/exec"
	"strings"
)

// Forbidden returns the packages in the transitive dependencies of pkg
// (an import path) whose import path starts with one of the given prefixes.
// It asks the go command, which is present wherever tests run.
func Forbidden(pkg string, prefixes ...string) ([]string, error) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("go list -deps %s: %w: %s", pkg, err, ee.Stderr)
		}
		return nil, fmt.Errorf("go list -deps %s: %w", pkg, err)
	}
	var bad []string
	for _, dep := range strings.Fields(string(out)) {
		for _, p := range prefixes {
			if dep == p || strings.HasPrefix(dep, p+"/") {
				bad = append(bad, dep)
			}
		}
	}
	return bad, nil
}
