package audit

import (
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"path/filepath"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/pgcloak/pgcloak/policy"
)

// syslogPriority is every record's priority: informational, in the
// facility meant for security and authorization messages.
const syslogPriority = syslog.LOG_INFO | syslog.LOG_AUTHPRIV

// syslogTag names the program in each syslog message.
const syslogTag = "pgcloak"

// Open opens cfg.Output and starts the Logger writing to it. It returns a
// nil Logger, which writes nothing, when cfg.Output is "". An output that
// cannot be opened now (a file in a directory that cannot be made, a syslog
// daemon that does not answer) is an error, so that a proxy that is meant
// to keep an audit trail does not start without one.
func Open(cfg policy.Audit, log *slog.Logger) (*Logger, error) {
	if cfg.Output == "" {
		return nil, nil
	}
	out, err := openOutput(cfg)
	if err != nil {
		return nil, fmt.Errorf("audit.output: %w", err)
	}
	return OpenWriter(out, cfg, log), nil
}

func openOutput(cfg policy.Audit) (io.Writer, error) {
	network, addr, err := cfg.RemoteSyslog()
	switch {
	case err != nil:
		return nil, err
	case network != "":
		return nonNil(syslog.Dial(network, addr, syslogPriority, syslogTag))
	case cfg.Output == policy.AuditSyslog:
		return nonNil(syslog.New(syslogPriority, syslogTag))
	case cfg.Output == policy.AuditStdout:
		return stdout{}, nil
	default:
		return openFile(cfg)
	}
}

// nonNil keeps a failed syslog connection's nil *syslog.Writer from
// becoming a non-nil io.Writer.
func nonNil(w *syslog.Writer, err error) (io.Writer, error) {
	if err != nil {
		return nil, err
	}
	return w, nil
}

// stdout writes to the process's standard output, which Close leaves open.
type stdout struct{}

func (stdout) Write(p []byte) (int, error) { return os.Stdout.Write(p) }

// openFile creates the audit file, readable by its owner only, before
// lumberjack takes it over: lumberjack would create it on the first record,
// too late to report a bad path, and keeps an existing file's mode when it
// rotates.
func openFile(cfg policy.Audit) (io.Writer, error) {
	if err := os.MkdirAll(filepath.Dir(cfg.Output), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(cfg.Output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	maxSize := cfg.MaxSizeMB
	if maxSize <= 0 {
		maxSize = policy.Defaults().Audit.MaxSizeMB
	}
	return &lumberjack.Logger{
		Filename:   cfg.Output,
		MaxSize:    maxSize,
		MaxBackups: cfg.MaxBackups,
	}, nil
}
