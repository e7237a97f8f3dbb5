package service

import (
	"path/filepath"
	"testing"

	"github.com/containerd/log"

	"github.com/socikit/socikit/internal/statusapi"
)

func TestLoadConfigPassthrough(t *testing.T) {
	p := t.TempDir() + "/c.toml"
	c, err := LoadConfig("")
	if err != nil || c.Lazy.DisablePassthrough || c.Lazy.PassthroughMinSize != DefaultPassthroughMinSize {
		t.Fatalf("defaults: %+v %v", c.Lazy, err)
	}
	if err := writeFile(p, "[lazy]\ndisable_passthrough = true\npassthrough_min_size = 65536\n"); err != nil {
		t.Fatal(err)
	}
	if c, err = LoadConfig(p); err != nil || !c.Lazy.DisablePassthrough || c.Lazy.PassthroughMinSize != 65536 {
		t.Fatalf("set: %+v %v", c.Lazy, err)
	}
	if err := writeFile(p, "[lazy]\npassthrough_min_size = -1\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err == nil {
		t.Fatal("negative passthrough_min_size accepted")
	}
}

func TestLoadConfigContainerd(t *testing.T) {
	p := t.TempDir() + "/c.toml"
	if c, err := LoadConfig(""); err != nil || c.Containerd.Address != DefaultContainerdAddress {
		t.Fatalf("default containerd address: %q, %v", c.Containerd.Address, err)
	}
	if err := writeFile(p, "[containerd]\naddress = \"\"\n"); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil || c.Containerd.Address != "" {
		t.Fatalf("address = \"\": %q, %v", c.Containerd.Address, err)
	}
	if newContainerdContent(c.Containerd.Address) != nil {
		t.Error("an empty address still asks containerd")
	}
}

// TestFindConfig: --config wins; without it the default path is read when
// it exists, the built-in defaults are used when it does not, and a path
// that cannot be looked at or a file that does not parse is an error.
func TestFindConfig(t *testing.T) {
	dir := t.TempDir()
	old := defaultConfigPath
	t.Cleanup(func() { defaultConfigPath = old })

	defaultConfigPath = filepath.Join(dir, "missing.toml")
	if p, err := FindConfig(""); p != "" || err != nil {
		t.Errorf("missing default: %q, %v; want the built-in defaults", p, err)
	}
	if p, err := FindConfig("/x/given.toml"); p != "/x/given.toml" || err != nil {
		t.Errorf("--config: %q, %v", p, err)
	}

	defaultConfigPath = filepath.Join(dir, "config.toml")
	if err := writeFile(defaultConfigPath, "log_level = \"debug\"\nmetrics_address = \"\"\n"); err != nil {
		t.Fatal(err)
	}
	p, err := FindConfig("")
	if p != defaultConfigPath || err != nil {
		t.Fatalf("default present: %q, %v", p, err)
	}
	if c, err := LoadConfig(p); err != nil || c.LogLevel != "debug" || c.MetricsAddress != "" {
		t.Errorf("default config read as %q %q, %v", c.LogLevel, c.MetricsAddress, err)
	}
	if err := writeFile(defaultConfigPath, "log_levle = \"debug\"\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err == nil {
		t.Error("invalid default config accepted")
	}

	defaultConfigPath = filepath.Join(defaultConfigPath, "config.toml") // under a file: ENOTDIR
	if p, err := FindConfig(""); err == nil {
		t.Errorf("default path that cannot be looked at: %q, no error", p)
	}
}

// TestLoadConfigDaemonDefaults: the metrics server is on by default at the
// address the CLI looks at; log_format is text or json.
func TestLoadConfigDaemonDefaults(t *testing.T) {
	c, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsAddress != statusapi.DefaultAddress || c.LogFormat != log.TextFormat {
		t.Errorf("defaults: metrics_address %q, log_format %q", c.MetricsAddress, c.LogFormat)
	}
	p := filepath.Join(t.TempDir(), "c.toml")
	for _, tc := range []struct {
		toml string
		ok   bool
		want log.OutputFormat
	}{
		{"log_format = \"json\"\n", true, log.JSONFormat},
		{"log_format = \"text\"\n", true, log.TextFormat},
		{"log_format = \"xml\"\n", false, ""},
		{"log_format = \"\"\n", false, ""},
	} {
		if err := writeFile(p, tc.toml); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(p)
		if (err == nil) != tc.ok || (tc.ok && c.LogFormat != tc.want) {
			t.Errorf("%q: %q, %v", tc.toml, c.LogFormat, err)
		}
	}
	if c := DefaultConfig().Override("", "", "", "json"); c.LogFormat != log.JSONFormat || c.Validate() != nil {
		t.Errorf("--log-format json: %q, %v", c.LogFormat, c.Validate())
	}
}

// TestExampleConfigTop: the example configuration lists the top-level
// settings with their defaults.
func TestExampleConfigTop(t *testing.T) {
	c, err := LoadConfig("../../examples/containerd/socikit-snapshotter.toml")
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if c.Root != d.Root || c.Address != d.Address || c.LogLevel != d.LogLevel || c.LogFormat != d.LogFormat || c.MetricsAddress != d.MetricsAddress {
		t.Errorf("example %q %q %q %q %q, defaults %q %q %q %q %q", c.Root, c.Address, c.LogLevel, c.LogFormat, c.MetricsAddress,
			d.Root, d.Address, d.LogLevel, d.LogFormat, d.MetricsAddress)
	}
}
