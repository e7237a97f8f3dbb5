package frontend

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options are the socikit settings of a build, from `# socikit:KEY=VALUE`
// lines of the Dockerfile and SOCIKIT_* build args (build args win).
type Options struct {
	// Attrs are soci exporter attributes (soci-reorder, soci-span-size,
	// soci-index, soci-min-layer-size) to pass to the exporter as defaults.
	Attrs map[string]string
	// Profile runs the start-up profiling step (default true).
	Profile bool
	// Startup is the start-up command; nil means ENTRYPOINT + CMD.
	Startup []string
	// Ready is the line the start-up prints when ready; empty waits for
	// the start-up to exit.
	Ready string
	// Timeout bounds the profiling run.
	Timeout time.Duration
	// Strict turns a failed profiling run into a build error.
	Strict bool
	// ProfileContext names a build context holding a profile to use
	// instead of profiling ("NAME" or "NAME:path/in/context"; default path
	// profile.json).
	ProfileContext string
}

// DefaultTimeout bounds a profiling run when no profile-timeout is set.
const DefaultTimeout = 60 * time.Second

// option describes one setting: its directive key, build arg and, for
// those the exporter reads, the exporter attribute.
type option struct {
	key, arg, attr, help string
}

var options = []option{
	{"reorder", "SOCIKIT_REORDER", "soci-reorder", "put the files the start-up reads first in the layers the build makes (default true when a profile was made)"},
	{"span-size", "SOCIKIT_SPAN_SIZE", "soci-span-size", "auto (default) or a byte count such as 1M"},
	{"index", "SOCIKIT_INDEX", "soci-index", "SOCI index version: v2 (default) or v1"},
	{"min-layer-size", "SOCIKIT_MIN_LAYER_SIZE", "soci-min-layer-size", "compressed size under which a layer gets no zTOC (default 10M)"},
	{"profile", "SOCIKIT_PROFILE", "", "true (default) or false: run the start-up profiling step"},
	{"startup", "SOCIKIT_STARTUP", "", `start-up command, a JSON array or a shell command (default: ENTRYPOINT + CMD)`},
	{"ready", "SOCIKIT_READY", "", "the start-up is ready when it prints a line containing this"},
	{"profile-timeout", "SOCIKIT_PROFILE_TIMEOUT", "", "how long the start-up may run (default 60s)"},
	{"strict", "SOCIKIT_STRICT", "", "true: a start-up that fails, times out or never prints the ready line fails the build"},
	{"profile-context", "SOCIKIT_PROFILE_CONTEXT", "", "use the profile in this build context (NAME or NAME:PATH, default path profile.json) instead of profiling"},
}

// directiveRe matches a `# socikit:KEY=VALUE` line.
var directiveRe = regexp.MustCompile(`^#\s*socikit:\s*([A-Za-z0-9_-]+)\s*=(.*)$`)

// ParseOptions reads the socikit directives of a Dockerfile and the
// SOCIKIT_* build args of opts (the frontend options, "build-arg:NAME"
// keys). An unknown directive or SOCIKIT_* build arg is an error naming
// it; so is a bad value.
func ParseOptions(dockerfile []byte, opts map[string]string) (*Options, error) {
	raw := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(dockerfile))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(t, "#") {
			continue
		}
		m := directiveRe.FindStringSubmatch(t)
		if m == nil {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(strings.TrimPrefix(t, "#")), "socikit:"); ok {
				return nil, fmt.Errorf("line %d of the Dockerfile: socikit directive %q is not KEY=VALUE", line, rest)
			}
			continue
		}
		key := strings.ToLower(m[1])
		if lookupOption(key) == nil {
			return nil, fmt.Errorf("line %d of the Dockerfile: unknown socikit directive %q (known: %s)", line, m[1], knownKeys())
		}
		raw[key] = strings.TrimSpace(m[2])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read Dockerfile: %w", err)
	}
	for k, v := range opts {
		name, ok := strings.CutPrefix(k, "build-arg:")
		if !ok || !strings.HasPrefix(name, "SOCIKIT_") {
			continue
		}
		o := lookupArg(name)
		if o == nil {
			return nil, fmt.Errorf("unknown socikit build arg %s (known: %s)", name, knownArgs())
		}
		raw[o.key] = v
	}
	return parseRaw(raw)
}

func parseRaw(raw map[string]string) (*Options, error) {
	o := &Options{Attrs: map[string]string{}, Profile: true, Timeout: DefaultTimeout}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := raw[k]
		opt := lookupOption(k)
		var err error
		switch k {
		case "profile":
			o.Profile, err = parseBool(v)
		case "strict":
			o.Strict, err = parseBool(v)
		case "reorder":
			var b bool
			if b, err = parseBool(v); err == nil {
				o.Attrs[opt.attr] = strconv.FormatBool(b)
			}
		case "startup":
			o.Startup, err = parseCommand(v)
		case "ready":
			o.Ready = unquote(v)
		case "profile-timeout":
			o.Timeout, err = time.ParseDuration(v)
			if err == nil && o.Timeout <= 0 {
				err = fmt.Errorf("must be positive")
			}
		case "profile-context":
			o.ProfileContext = v
			if v == "" {
				err = fmt.Errorf("empty")
			}
		default:
			// Exporter attributes are checked by the exporter, which
			// names the attribute in its error.
			o.Attrs[opt.attr] = v
		}
		if err != nil {
			return nil, fmt.Errorf("socikit option %s (build arg %s): invalid value %q: %w", k, opt.arg, v, err)
		}
	}
	return o, nil
}

func parseBool(v string) (bool, error) {
	if v == "" {
		return true, nil
	}
	return strconv.ParseBool(v)
}

// parseCommand reads a JSON array of strings, or a shell command line
// that runs with /bin/sh -c, as RUN's two forms do.
func parseCommand(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "[") {
		var a []string
		if err := json.Unmarshal([]byte(v), &a); err != nil {
			return nil, fmt.Errorf("not a JSON array of strings: %w", err)
		}
		if len(a) == 0 {
			return nil, fmt.Errorf("empty command")
		}
		return a, nil
	}
	if v == "" {
		return nil, fmt.Errorf("empty command")
	}
	return []string{"/bin/sh", "-c", v}, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"') {
		if s, err := strconv.Unquote(v); err == nil {
			return s
		}
	}
	return v
}

func lookupOption(key string) *option {
	for i := range options {
		if options[i].key == key {
			return &options[i]
		}
	}
	return nil
}

func lookupArg(arg string) *option {
	for i := range options {
		if options[i].arg == arg {
			return &options[i]
		}
	}
	return nil
}

func knownKeys() string {
	var s []string
	for _, o := range options {
		s = append(s, o.key)
	}
	return strings.Join(s, ", ")
}

func knownArgs() string {
	var s []string
	for _, o := range options {
		s = append(s, o.arg)
	}
	return strings.Join(s, ", ")
}
