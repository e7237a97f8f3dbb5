package images

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeApp lays out a minimal app directory as scripts/bench-images.sh does.
func writeApp(t *testing.T, root, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(root, name)
	for _, d := range []string{"context/base", "context/pkgs", "context/app"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for n, body := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func validFiles() map[string]string {
	return map[string]string{
		"Dockerfile":   "FROM scratch\n",
		"cmd.json":     `["/usr/bin/python3","/app/main.py"]` + "\n",
		"ready":        "ready\n",
		"startup.txt":  "/usr/bin/python3.11\n/app/main.py\n",
		"prefetch.txt": "/usr/bin/python3.11\n",
		"startup.json": `{"files": 2, "bytes": 100, "layers": {"base": {"files": 0, "bytes": 0}, "pkgs": {"files": 1, "bytes": 90}, "app": {"files": 1, "bytes": 10}}}` + "\n",
	}
}

func TestLoad(t *testing.T) {
	dir := writeApp(t, t.TempDir(), "python", validFiles())
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "python" || a.Ready != "ready" || a.Context != filepath.Join(dir, "context") {
		t.Errorf("got %+v", a)
	}
	if want := []string{"/usr/bin/python3", "/app/main.py"}; !reflect.DeepEqual(a.Cmd, want) {
		t.Errorf("Cmd = %q, want %q", a.Cmd, want)
	}
	if a.PrefetchAttr() != "/usr/bin/python3.11" || len(a.StartupFiles) != 2 {
		t.Errorf("prefetch %q, startup %q", a.PrefetchAttr(), a.StartupFiles)
	}
	if a.Startup.Bytes != 100 || a.Startup.Layers["pkgs"] != (Count{Files: 1, Bytes: 90}) {
		t.Errorf("Startup = %+v", a.Startup)
	}
	if a.Ranges != nil {
		t.Errorf("Ranges = %+v without startup-ranges.json", a.Ranges)
	}
}

func TestLoadRanges(t *testing.T) {
	f := validFiles()
	f["startup-ranges.json"] = `{"version":"socikit.profile.v1","source":"build","files":[{"path":"/usr/bin/python3.11","ranges":[[0,4096],[8192,4096]]}]}` + "\n"
	a, err := Load(writeApp(t, t.TempDir(), "python", f))
	if err != nil {
		t.Fatal(err)
	}
	if a.Ranges == nil || len(a.Ranges.Files) != 1 || a.Ranges.Bytes() != 8192 {
		t.Errorf("Ranges = %+v", a.Ranges)
	}
	f["startup-ranges.json"] = `{"version":"socikit.profile.v0","files":[]}`
	if _, err := Load(writeApp(t, t.TempDir(), "python", f)); err == nil || !strings.Contains(err.Error(), "startup-ranges.json") {
		t.Errorf("a bad startup-ranges.json: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	for name, edit := range map[string]func(map[string]string){
		"no cmd":        func(f map[string]string) { delete(f, "cmd.json") },
		"empty cmd":     func(f map[string]string) { f["cmd.json"] = "[]" },
		"empty ready":   func(f map[string]string) { f["ready"] = "\n" },
		"relative path": func(f map[string]string) { f["prefetch.txt"] = "usr/bin/python3.11\n" },
		"count":         func(f map[string]string) { f["startup.txt"] = "/a\n" },
		"no dockerfile": func(f map[string]string) { delete(f, "Dockerfile") },
	} {
		t.Run(name, func(t *testing.T) {
			f := validFiles()
			edit(f)
			if _, err := Load(writeApp(t, t.TempDir(), "python", f)); err == nil {
				t.Fatal("Load accepted it")
			} else if !strings.Contains(err.Error(), "python") {
				t.Errorf("error does not name the app: %v", err)
			}
		})
	}
}

// TestLoadPrepared loads the apps of a cache directory that
// scripts/bench-images.sh filled, when SOCIKIT_BENCH_CACHE names one.
func TestLoadPrepared(t *testing.T) {
	cache := os.Getenv("SOCIKIT_BENCH_CACHE")
	if cache == "" {
		t.Skip("SOCIKIT_BENCH_CACHE not set")
	}
	for _, n := range Names {
		dir := filepath.Join(cache, n)
		if _, err := os.Stat(filepath.Join(dir, "context.stamp")); err != nil {
			continue
		}
		a, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if a.Ready != "ready" || len(a.Prefetch) == 0 || len(a.Prefetch) > len(a.StartupFiles) {
			t.Errorf("%s: ready %q, %d prefetch, %d startup files", n, a.Ready, len(a.Prefetch), len(a.StartupFiles))
		}
		for _, p := range a.Prefetch {
			base, pkgs := filepath.Join(a.Context, "base", p), filepath.Join(a.Context, "pkgs", p)
			fi, err := os.Lstat(pkgs)
			if err != nil {
				fi, err = os.Lstat(base)
			}
			if err != nil || !fi.Mode().IsRegular() {
				t.Errorf("%s: prefetch %s is not a regular file of the base or package layer", n, p)
			}
		}
		t.Logf("%s: %v, %d startup files, %d bytes", n, a.Cmd, a.Startup.Files, a.Startup.Bytes)
	}
}
