// Package images reads the benchmark images' build contexts that
// scripts/bench-images.sh prepares: per app (python, node, jvm,
// toolchain), a directory holding a Dockerfile (FROM scratch, three COPY
// layers: Debian base, the app's packages, the app), its build context, the
// app's command and ready line, and its start-up profile.
//
// Layout of an app directory DIR/APP:
//
//	Dockerfile      the image recipe (context: DIR/APP/context)
//	context/base/   Debian bookworm minbase (hard links into DIR/rootfs/base)
//	context/pkgs/   the app's Debian packages (an overlay upper dir, cleaned)
//	context/app/    the app, /app in the image
//	cmd.json        the command, a JSON array
//	ready           the line the app prints once started
//	startup.txt     regular files read at start-up, first-open order
//	prefetch.txt    startup.txt less the app layer's files (soci-prefetch)
//	startup.json    {"files", "bytes", "layers": {"base"|"pkgs"|"app": {"files", "bytes"}}}
//	startup-ranges.json  optional: the byte ranges the start-up reads, a
//	                start-up profile (socikit.profile.v1) from socikit-trace
package images

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/socikit/socikit/profile"
)

// Names lists the apps scripts/bench-images.sh knows, in its order.
var Names = []string{"python", "node", "jvm", "toolchain"}

// Files and bytes of a set of files.
type Count struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Startup is startup.json: the regular files the app reads before it
// exits, in all and per layer ("base", "pkgs", "app").
type Startup struct {
	Count
	Layers map[string]Count `json:"layers"`
}

// App is one prepared benchmark image.
type App struct {
	Name       string   // python, node, jvm, toolchain
	Dir        string   // DIR/APP: the dockerfile directory (buildctl --local dockerfile=Dir)
	Context    string   // DIR/APP/context (buildctl --local context=Context)
	Dockerfile string   // DIR/APP/Dockerfile
	Cmd        []string // the image's CMD
	Ready      string   // the ready line
	// StartupFiles are the image paths of the regular files read at
	// start-up; Prefetch the same less the app layer's (which is under the
	// exporter's soci-min-layer-size, so not indexed): the soci-prefetch list.
	StartupFiles []string
	Prefetch     []string
	Startup      Startup
	// Ranges is startup-ranges.json, the byte ranges the start-up reads
	// (socikit-trace in a chroot of the rootfs), or nil when the context
	// has none (scripts/bench-images.sh without BENCH_TRACE).
	Ranges *profile.Profile
}

// PrefetchAttr is Prefetch as the soci-prefetch exporter attribute value.
func (a *App) PrefetchAttr() string { return strings.Join(a.Prefetch, ",") }

// Load reads the app directory dir (DIR/APP); the app's name is its base name.
func Load(dir string) (*App, error) {
	a := &App{Name: filepath.Base(dir), Dir: dir, Context: filepath.Join(dir, "context"),
		Dockerfile: filepath.Join(dir, "Dockerfile")}
	for _, p := range []string{a.Dockerfile, filepath.Join(a.Context, "base"), filepath.Join(a.Context, "pkgs"), filepath.Join(a.Context, "app")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("images: %s: %w", a.Name, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "cmd.json"))
	if err != nil {
		return nil, fmt.Errorf("images: %s: %w", a.Name, err)
	}
	if err := json.Unmarshal(b, &a.Cmd); err != nil || len(a.Cmd) == 0 {
		return nil, fmt.Errorf("images: %s: cmd.json: not a non-empty JSON array of strings (%v)", a.Name, err)
	}
	if b, err = os.ReadFile(filepath.Join(dir, "ready")); err != nil {
		return nil, fmt.Errorf("images: %s: %w", a.Name, err)
	}
	if a.Ready = strings.TrimSpace(string(b)); a.Ready == "" {
		return nil, fmt.Errorf("images: %s: empty ready line", a.Name)
	}
	if a.StartupFiles, err = readList(filepath.Join(dir, "startup.txt")); err != nil {
		return nil, fmt.Errorf("images: %s: %w", a.Name, err)
	}
	if a.Prefetch, err = readList(filepath.Join(dir, "prefetch.txt")); err != nil {
		return nil, fmt.Errorf("images: %s: %w", a.Name, err)
	}
	if b, err = os.ReadFile(filepath.Join(dir, "startup.json")); err != nil {
		return nil, fmt.Errorf("images: %s: %w", a.Name, err)
	}
	if err := json.Unmarshal(b, &a.Startup); err != nil {
		return nil, fmt.Errorf("images: %s: startup.json: %w", a.Name, err)
	}
	if a.Startup.Files != len(a.StartupFiles) {
		return nil, fmt.Errorf("images: %s: startup.json counts %d files, startup.txt lists %d", a.Name, a.Startup.Files, len(a.StartupFiles))
	}
	switch b, err = os.ReadFile(filepath.Join(dir, "startup-ranges.json")); {
	case err == nil:
		if a.Ranges, err = profile.Decode(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("images: %s: startup-ranges.json: %w", a.Name, err)
		}
	case !os.IsNotExist(err):
		return nil, fmt.Errorf("images: %s: %w", a.Name, err)
	}
	return a, nil
}

// readList reads a file of absolute paths, one a line.
func readList(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if l == "" {
			continue
		}
		if !strings.HasPrefix(l, "/") {
			return nil, fmt.Errorf("%s: %q is not absolute", name, l)
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

// Prepare runs script (scripts/bench-images.sh) with cache as its cache
// directory ("" for its default) for the named apps (none: all), its
// progress going to progress (nil: discarded), and loads the app
// directories it prints. Needs root; a cold run takes minutes, a cached one
// well under a second.
func Prepare(ctx context.Context, script, cache string, progress io.Writer, names ...string) ([]*App, error) {
	var args []string
	if cache != "" {
		args = append(args, "--cache", cache)
	}
	cmd := exec.CommandContext(ctx, script, append(args, names...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = progress
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("images: %s: %w", script, err)
	}
	var apps []*App
	for _, dir := range strings.Fields(out.String()) {
		a, err := Load(dir)
		if err != nil {
			return nil, err
		}
		apps = append(apps, a)
	}
	return apps, nil
}
