package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/progress"
)

// Option configures Run.
type Option func(*env)

type env struct {
	stdout, stderr io.Writer
	rt             http.RoundTripper
	prog           *progress.Progress // startProgress
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
Run 'socikit <command> --help' for the flags of a command, 'socikit --version'
for the version.
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

// platformList is a repeatable platform flag, in containerd's syntax
// (platforms.Parse: os[/arch[/variant]], normalized, so linux/arm64/v8 is
// linux/arm64 and linux/arm is linux/arm/v7).
type platformList []ocispec.Platform

func (p *platformList) String() string {
	var s []string
	for _, x := range *p {
		s = append(s, platforms.Format(x))
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

// parsePlatform parses a platform as platformList does.
func parsePlatform(s string) (ocispec.Platform, error) {
	p, err := platforms.Parse(s)
	if err != nil {
		return ocispec.Platform{}, fmt.Errorf("platform %q: %w", s, err)
	}
	return p, nil
}

// hostPlatform is the platform a runtime on this machine pulls, variant
// included (platforms.DefaultSpec reads the CPU variant on arm),
// normalized. A variable for tests.
var hostPlatform = func() ocispec.Platform {
	return platforms.Normalize(platforms.DefaultSpec())
}

// platformString formats p as os/arch[/variant]; "" for nil.
func platformString(p *ocispec.Platform) string {
	if p == nil {
		return ""
	}
	return platforms.Format(*p)
}

// platformMatches reports whether have is the platform want names, both
// normalized (platforms.NewMatcher: linux/arm64/v8 is linux/arm64).
func platformMatches(want ocispec.Platform, have *ocispec.Platform) bool {
	return have != nil && platforms.NewMatcher(want).Match(*have)
}

// bestPlatform returns the position in have of the platform a runtime
// asked for want pulls: the best of those platforms.Only(want) accepts
// (linux/arm/v7 runs linux/arm/v6, linux/amd64 runs linux/386 when there
// is no linux/amd64), the first of equals; -1 if none. Nil entries never
// match.
func bestPlatform(want ocispec.Platform, have []*ocispec.Platform) int {
	mc := platforms.Only(want)
	best := -1
	for i, p := range have {
		if p == nil || !mc.Match(*p) {
			continue
		}
		if best < 0 || mc.Less(*p, *have[best]) {
			best = i
		}
	}
	return best
}

// selectPlatforms marks, for each platform of want, the entries of have a
// runtime of that platform pulls: the best match (bestPlatform) and the
// entries of the same platform.
func selectPlatforms(want []ocispec.Platform, have []*ocispec.Platform) []bool {
	sel := make([]bool, len(have))
	for _, w := range want {
		b := bestPlatform(w, have)
		if b < 0 {
			continue
		}
		for i, p := range have {
			if platformMatches(*have[b], p) {
				sel[i] = true
			}
		}
	}
	return sel
}
