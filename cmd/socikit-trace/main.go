// Command socikit-trace records the start-up profile of a command: which
// byte ranges of which files it reads, mapped pages included, in
// first-access order (package frontend/trace). The `# syntax=` frontend
// runs it in an exec on the image's final rootfs:
//
//	socikit-trace [--ready LINE] [--timeout 60s] [--out profile.json] [--status status.json] [--exclude /prefix]... [--interval 10ms] [--no-filter] -- CMD [ARGS...]
//
// The command's output is passed through. The run ends at the first
// output line containing LINE (the processes are then killed), or without
// --ready when CMD exits. The profile (profile.Encode) is written to
// --out only when the run went well; the status, {"ok":..,"cause":..,
// "files":..,"ranges":..,"bytes":..,"seconds":..}, to --status always.
//
// It exits 0 whenever it wrote the status file, whatever the command did,
// so that the build step does not fail and the frontend decides; without
// --status it exits 1 when no profile was made. Usage errors exit 2. It is
// built static (CGO_ENABLED=0) to run in any image.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/socikit/socikit/frontend/trace"
	"github.com/socikit/socikit/internal/version"
	"github.com/socikit/socikit/profile"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("socikit-trace", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: socikit-trace [--ready LINE] [--timeout 60s] [--out PROFILE.json] [--status STATUS.json] [--exclude /PREFIX]... -- CMD [ARGS...]")
		fs.PrintDefaults()
	}
	var (
		o        trace.Options
		excludes listFlag
	)
	fs.StringVar(&o.Ready, "ready", "", "end the run at the first output line containing `LINE` (default: when the command exits)")
	fs.DurationVar(&o.Timeout, "timeout", trace.DefaultTimeout, "bound of the run: no ready line within it fails the run; without --ready, the command is stopped there")
	out := fs.String("out", "", "write the profile to `FILE` (only when the run went well)")
	statusPath := fs.String("status", "", "write the status JSON to `FILE`")
	fs.Var(&excludes, "exclude", "path `PREFIX` not recorded (repeatable; /proc, /sys and /dev never are)")
	fs.DurationVar(&o.Interval, "interval", trace.DefaultInterval, "period of mapped-page sampling")
	fs.BoolVar(&o.NoFilter, "no-filter", false, "stop the tracees at every system call instead of installing the seccomp filter (slower; for comparison)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Println("socikit-trace", version.String())
		return 0
	}
	o.Command = fs.Args()
	if len(o.Command) == 0 {
		fmt.Fprintln(os.Stderr, "socikit-trace: no command (socikit-trace [flags] -- CMD [ARGS...])")
		fs.Usage()
		return 2
	}
	o.Exclude = excludes
	// The output files are the tracer's, not the start-up's.
	for _, f := range []string{*out, *statusPath} {
		if f != "" {
			if abs, err := filepath.Abs(f); err == nil {
				o.Exclude = append(o.Exclude, abs)
			}
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	p, st, err := trace.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "socikit-trace:", err)
		return 2
	}
	if st.OK && *out != "" {
		if err := writeProfile(*out, p); err != nil {
			st.OK = false
			st.Cause = "writing the profile: " + err.Error()
		}
	}
	summary(st)
	if *statusPath == "" {
		if st.OK {
			return 0
		}
		return 1
	}
	b, _ := json.Marshal(st)
	if err := writeFile(*statusPath, append(b, '\n')); err != nil {
		fmt.Fprintln(os.Stderr, "socikit-trace: writing the status:", err)
		return 1
	}
	return 0
}

func summary(st trace.Status) {
	if st.OK {
		fmt.Fprintf(os.Stderr, "socikit-trace: ok: %d files, %d ranges, %d bytes read in %.2fs (%s)\n", st.Files, st.Ranges, st.Bytes, st.Seconds, st.Cause)
		return
	}
	fmt.Fprintf(os.Stderr, "socikit-trace: no profile: %s\n", st.Cause)
}

func writeProfile(name string, p *profile.Profile) error {
	b, err := profile.Marshal(p)
	if err != nil {
		return err
	}
	return writeFile(name, b)
}

// writeFile writes name through a temporary file and a rename, so that a
// reader never sees half a file.
func writeFile(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
