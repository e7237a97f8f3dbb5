package service

import (
	"fmt"
	stdlog "log"
	"strings"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// SetupLogging configures the process's log for the daemon: containerd/log's
// logger (logrus, on stderr) at c.LogLevel in c.LogFormat, and the standard
// library's log package written into it at warn level, one entry a line with
// the field logger=stdlib. go-fuse writes its warnings (and with its Debug
// option its request traces) through the standard logger, as net/http's
// server does its errors, so that in JSON format every line of stderr is
// JSON. Run calls it; it may be called again.
func SetupLogging(c Config) error {
	if err := log.SetLevel(c.LogLevel); err != nil {
		return fmt.Errorf("set log level: %w", err)
	}
	if err := log.SetFormat(c.LogFormat); err != nil {
		return fmt.Errorf("set log format: %w", err)
	}
	stdlog.SetFlags(0) // the time is the structured log's
	stdlog.SetPrefix("")
	stdlog.SetOutput(stdlogWriter{entry: log.L.WithField("logger", "stdlib"), level: logrus.WarnLevel})
	return nil
}

// stdlogWriter turns the lines a standard library log.Logger writes (one
// Write call a message) into entries of a structured log.
type stdlogWriter struct {
	entry *logrus.Entry
	level logrus.Level
}

func (w stdlogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.entry.Log(w.level, line)
	}
	return len(p), nil
}
