package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	stdlog "log"
	"slices"
	"testing"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
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

// TestGRPCLogger: grpc-go's messages enter the daemon's log at the levels
// GRPCLogger documents.
func TestGRPCLogger(t *testing.T) {
	var buf bytes.Buffer
	lg := logrus.New()
	lg.SetOutput(&buf)
	lg.SetFormatter(&logrus.JSONFormatter{})
	lg.SetLevel(logrus.DebugLevel)
	g := grpcLogger{lg.WithField("logger", "grpc")}
	g.Infof("channel %d created", 1) // trace: hidden at debug
	g.Warningln("addrConn: connection refused")
	g.Errorf("transport: %v", "broken pipe")
	if !g.V(0) || g.V(2) {
		t.Error("V: want grpc's default verbosity 0")
	}
	var got []string
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%v %v %v", e["level"], e["logger"], e["msg"]))
	}
	want := []string{"debug grpc addrConn: connection refused", "error grpc transport: broken pipe"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
