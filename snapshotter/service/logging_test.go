package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	stdlog "log"
	"testing"

	"github.com/containerd/log"
)

// TestSetupLoggingJSON: with log_format json, the daemon's own entries and
// the standard library logger's lines (go-fuse, net/http) are JSON lines of
// one log, at the configured level.
func TestSetupLoggingJSON(t *testing.T) {
	var buf bytes.Buffer
	lg := log.L.Logger
	oldOut, oldFormatter, oldLevel := lg.Out, lg.Formatter, lg.GetLevel()
	oldStd, oldFlags, oldPrefix := stdlog.Writer(), stdlog.Flags(), stdlog.Prefix()
	t.Cleanup(func() {
		lg.SetOutput(oldOut)
		lg.SetFormatter(oldFormatter)
		lg.SetLevel(oldLevel)
		stdlog.SetOutput(oldStd)
		stdlog.SetFlags(oldFlags)
		stdlog.SetPrefix(oldPrefix)
	})

	c := DefaultConfig()
	c.LogFormat = log.JSONFormat
	c.LogLevel = "warn"
	if err := SetupLogging(c); err != nil {
		t.Fatal(err)
	}
	lg.SetOutput(&buf)
	log.G(context.Background()).WithField("layer", "sha256:x").Warn("mount failed")
	log.G(context.Background()).Info("not at warn level")
	stdlog.Printf("writer: Write/Writev failed, err: %v", "ENOENT")
	stdlog.Print("two\nlines")

	var got []map[string]any
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		got = append(got, e)
	}
	want := []map[string]any{
		{"level": "warning", "msg": "mount failed", "layer": "sha256:x"},
		{"level": "warning", "msg": "writer: Write/Writev failed, err: ENOENT", "logger": "stdlib"},
		{"level": "warning", "msg": "two", "logger": "stdlib"},
		{"level": "warning", "msg": "lines", "logger": "stdlib"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i, w := range want {
		for k, v := range w {
			if got[i][k] != v {
				t.Errorf("entry %d: %s = %v, want %v", i, k, got[i][k], v)
			}
		}
		if _, ok := got[i]["time"]; !ok {
			t.Errorf("entry %d has no time", i)
		}
	}

	c.LogFormat = "yaml"
	if err := SetupLogging(c); err == nil {
		t.Error("log format yaml accepted")
	}
}
