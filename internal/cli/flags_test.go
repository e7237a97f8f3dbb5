package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestFlagStyle: every command parses its flags the same way (newFlagSet,
// parseArgs): --help prints "Usage: socikit NAME" and its flags to stderr
// and is no error; an unknown flag is an error naming it; flags may follow
// the arguments.
func TestFlagStyle(t *testing.T) {
	for _, args := range [][]string{{"convert"}, {"inspect"}, {"get-file"}, {"status"}, {"profile", "export"}} {
		name := strings.Join(args, " ")
		var stdout, stderr bytes.Buffer
		if err := Run(context.Background(), append(args, "--help"), WithOutput(&stdout, &stderr)); err != nil {
			t.Errorf("%s --help: %v", name, err)
		}
		if !strings.HasPrefix(stderr.String(), "Usage: socikit "+name+" ") || !strings.Contains(stderr.String(), "Flags:\n") {
			t.Errorf("%s --help printed %q", name, stderr.String())
		}
		err := Run(context.Background(), append(args, "ARG", "--no-such-flag"), WithOutput(&stdout, &stderr))
		if err == nil || !strings.Contains(err.Error(), "no-such-flag") {
			t.Errorf("%s ARG --no-such-flag: %v", name, err)
		}
	}
}
