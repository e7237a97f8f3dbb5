package service

import (
	"fmt"
	stdlog "log"
	"strings"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/grpclog"
)

// SetupLogging configures the process's log for the daemon: containerd/log's
// logger (logrus, on stderr) at c.LogLevel in c.LogFormat, and the standard
// library's log package written into it at warn level, one entry a line with
// the field logger=stdlib. go-fuse writes its warnings (and with its Debug
// option its request traces) through the standard logger, as net/http's
// server does its errors, so that in JSON format every line of stderr is
// JSON (grpc-go's logger: GRPCLogger). Run calls it; it may be called
// again.
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

// GRPCLogger returns a grpc-go logger (for grpclog.SetLoggerV2, which must
// be called before any gRPC use, so the command calls it, not Run) writing
// into the daemon's log with the field logger=grpc. grpc's info messages
// go to trace and its warnings to debug level, where grpc's own default
// (errors only) hid them: a containerd socket nobody listens on would
// otherwise put a reconnect warning in the log every few seconds. Errors
// stay errors.
func GRPCLogger() grpclog.LoggerV2 {
	return grpcLogger{log.L.WithField("logger", "grpc")}
}

type grpcLogger struct{ e *logrus.Entry }

func (g grpcLogger) Info(args ...any)                    { g.e.Trace(args...) }
func (g grpcLogger) Infoln(args ...any)                  { g.e.Traceln(args...) }
func (g grpcLogger) Infof(format string, args ...any)    { g.e.Tracef(format, args...) }
func (g grpcLogger) Warning(args ...any)                 { g.e.Debug(args...) }
func (g grpcLogger) Warningln(args ...any)               { g.e.Debugln(args...) }
func (g grpcLogger) Warningf(format string, args ...any) { g.e.Debugf(format, args...) }
func (g grpcLogger) Error(args ...any)                   { g.e.Error(args...) }
func (g grpcLogger) Errorln(args ...any)                 { g.e.Errorln(args...) }
func (g grpcLogger) Errorf(format string, args ...any)   { g.e.Errorf(format, args...) }
func (g grpcLogger) Fatal(args ...any)                   { g.e.Fatal(args...) }
func (g grpcLogger) Fatalln(args ...any)                 { g.e.Fatalln(args...) }
func (g grpcLogger) Fatalf(format string, args ...any)   { g.e.Fatalf(format, args...) }

// V reports whether verbosity level l is on: grpc's default, 0.
func (g grpcLogger) V(l int) bool { return l <= 0 }
