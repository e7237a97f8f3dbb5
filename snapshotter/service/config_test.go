package service

import "testing"

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
