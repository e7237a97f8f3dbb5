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
