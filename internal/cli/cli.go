package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Option configures Run.
type Option func(*env)

type env struct {
	stdout, stderr io.Writer
	rt             http.RoundTripper
	progress       bool
	extra          []Command
}

// Command is a subcommand that lives outside this package (one that needs
// containerd's client, which this package keeps out of its dependencies:
// internal/cli/pull), registered with WithCommand.
type Command struct {
	// Name is the word after "socikit"; Summary its line in the usage.
	Name, Summary string
	// Run runs the command on the arguments after its name, writing
	// results to stdout and diagnostics to stderr. A flag.ErrHelp error
	// (--help) is not reported.
	Run func(ctx context.Context, stdout, stderr io.Writer, args []string) error
}

// WithCommand adds a subcommand.
func WithCommand(c Command) Option {
	return func(e *env) { e.extra = append(e.extra, c) }
}

// WithOutput sets where Run writes results (stdout) and diagnostics
// (stderr). Default os.Stdout and os.Stderr.
func WithOutput(stdout, stderr io.Writer) Option {
	return func(e *env) { e.stdout, e.stderr = stdout, stderr }
}

// WithTransport sets the HTTP transport for registries. Default ggcr's
// remote.DefaultTransport.
func WithTransport(rt http.RoundTripper) Option {
	return func(e *env) { e.rt = rt }
}

const usageHead = `Usage: socikit <command> [flags] [args]

Commands:
  convert   index an image's layers and write a SOCI-enabled image
  inspect   describe the SOCI index of an image
  get-file  read one file of an indexed layer through its zTOC
  status    show what socikit-snapshotter fetched of the images it mounted
  profile   export the start-up profile socikit-snapshotter recorded for an image
`

const usageTail = `
Run 'socikit <command> --help' for the flags of a command.
`

func (e *env) usage() string {
	s := usageHead
	for _, c := range e.extra {
		s += fmt.Sprintf("  %-8s  %s\n", c.Name, c.Summary)
	}
	return s + usageTail
}

// Run runs the socikit command line args (without the program name).
func Run(ctx context.Context, args []string, opts ...Option) error {
	e := &env{stdout: os.Stdout, stderr: os.Stderr}
	for _, o := range opts {
		o(e)
	}
	e.progress = isTerminal(e.stderr)
	usage := e.usage()
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return errors.New("no command given")
	}
	var err error
	switch args[0] {
	case "convert":
		err = runConvert(ctx, e, args[1:])
	case "inspect":
		err = runInspect(ctx, e, args[1:])
	case "get-file":
		err = runGetFile(ctx, e, args[1:])
	case "status":
		err = runStatus(ctx, e, args[1:])
	case "profile":
		err = runProfile(ctx, e, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	default:
		i := slices.IndexFunc(e.extra, func(c Command) bool { return c.Name == args[0] })
		if i < 0 {
			fmt.Fprint(e.stderr, usage)
			return fmt.Errorf("unknown command %q", args[0])
		}
		err = e.extra[i].Run(ctx, e.stdout, e.stderr, args[1:])
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressf writes a progress line to stderr when it is a terminal.
func (e *env) progressf(format string, args ...any) {
	if e.progress {
		fmt.Fprintf(e.stderr, format+"\n", args...)
	}
}

// warnf always writes a warning to stderr.
func (e *env) warnf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "socikit: warning: "+format+"\n", args...)
}

// newFlagSet returns a flag set whose usage text is synopsis, doc and the
// flag defaults, written to stderr.
func newFlagSet(e *env, name, synopsis, doc string) *flag.FlagSet {
	return NewFlagSet(e.stderr, name, synopsis, doc)
}

// NewFlagSet returns the flag set of command name, as every socikit command
// has it: errors are returned, and the usage text (synopsis, doc and the
// flag defaults) goes to stderr.
func NewFlagSet(stderr io.Writer, name, synopsis, doc string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: socikit %s %s\n\n%s\nFlags:\n", name, synopsis, doc)
		fs.PrintDefaults()
	}
	return fs
}

// ParseArgs parses flags mixed with positional arguments, as parseArgs.
func ParseArgs(fs *flag.FlagSet, args []string) ([]string, error) { return parseArgs(fs, args) }

// parseArgs parses flags mixed with positional arguments ("SRC --jobs 2
// DST"); everything after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// platformList is a repeatable os/arch[/variant] flag.
type platformList []ocispec.Platform

func (p *platformList) String() string {
	var s []string
	for _, x := range *p {
		s = append(s, platformString(&x))
	}
	return strings.Join(s, ",")
}

func (p *platformList) Set(v string) error {
	pl, err := parsePlatform(v)
	if err != nil {
		return err
	}
	*p = append(*p, pl)
	return nil
}

func parsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return ocispec.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func hostPlatform() ocispec.Platform {
	return ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
}

func platformString(p *ocispec.Platform) string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// platformMatches reports whether have satisfies want: same OS and
// architecture, and the same variant if want names one.
func platformMatches(want ocispec.Platform, have *ocispec.Platform) bool {
	if have == nil {
		return false
	}
	return want.OS == have.OS && want.Architecture == have.Architecture && (want.Variant == "" || want.Variant == have.Variant)
}
