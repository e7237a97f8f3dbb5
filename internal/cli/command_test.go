package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestWithCommand(t *testing.T) {
	var got []string
	c := Command{Name: "echo", Summary: "print the arguments", Run: func(_ context.Context, stdout, stderr io.Writer, args []string) error {
		fs := NewFlagSet(stderr, "echo", "[--upper] WORDS", "Print WORDS.\n")
		upper := fs.Bool("upper", false, "upper case")
		pos, err := ParseArgs(fs, args)
		if err != nil {
			return err
		}
		got = pos
		s := strings.Join(pos, " ")
		if *upper {
			s = strings.ToUpper(s)
		}
		fmt.Fprintln(stdout, s)
		return nil
	}}
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), []string{"echo", "a", "--upper", "b"}, WithOutput(&stdout, &stderr), WithCommand(c)); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "A B\n" || len(got) != 2 {
		t.Errorf("stdout %q, args %q", stdout.String(), got)
	}
	stdout.Reset()
	if err := Run(context.Background(), []string{"help"}, WithOutput(&stdout, &stderr), WithCommand(c)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "  echo      print the arguments\n") || !strings.Contains(stdout.String(), "  convert ") {
		t.Errorf("usage does not list the command:\n%s", stdout.String())
	}
	stderr.Reset()
	if err := Run(context.Background(), []string{"echo", "--help"}, WithOutput(&stdout, &stderr), WithCommand(c)); err != nil {
		t.Errorf("--help: %v", err)
	}
	if !strings.Contains(stderr.String(), "Usage: socikit echo [--upper] WORDS") {
		t.Errorf("--help printed %q", stderr.String())
	}
	if err := Run(context.Background(), []string{"echo", "--loud"}, WithOutput(&stdout, &stderr), WithCommand(c)); err == nil || err == flag.ErrHelp {
		t.Errorf("unknown flag: %v", err)
	}
	if err := Run(context.Background(), []string{"echo"}, WithOutput(&stdout, &stderr)); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("without WithCommand: %v", err)
	}
}
