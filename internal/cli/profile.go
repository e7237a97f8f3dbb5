package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/socikit/socikit/profile"
)

// Headers socikit-snapshotter sets on /profile answers
// (snapshotter/service; repeated here, the CLI does not import it).
const (
	headerProfileStarts    = "Socikit-Profile-Starts"
	headerProfileDropped   = "Socikit-Profile-Dropped"
	headerProfileRecording = "Socikit-Profile-Recording"
)

const profileUsage = `Usage: socikit profile export [--address ADDRESS] [-o FILE] IMAGE

Subcommands:
  export  write the start-up profile socikit-snapshotter recorded for IMAGE
`

const profileExportDoc = `Write the start-up profile that socikit-snapshotter recorded for IMAGE: the
byte ranges of the files its containers read from lazy layers in the first
seconds of each start, in first-access order (the profile format, JSON), to
FILE or stdout. Feed it to the next build (examples/profile). IMAGE is the
reference the image was pulled as (the IMAGE column of 'socikit status'; a
short form such as busybox:latest is found too). ADDRESS is the
snapshotter's metrics_address (host:port or an http:// URL).
`

func runProfile(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, profileUsage)
		return errors.New("profile: no subcommand given")
	}
	switch args[0] {
	case "export":
		return runProfileExport(ctx, e, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, profileUsage)
		return nil
	}
	fmt.Fprint(e.stderr, profileUsage)
	return fmt.Errorf("profile: unknown subcommand %q", args[0])
}

func runProfileExport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "profile export", "[--address ADDRESS] [-o FILE] IMAGE", profileExportDoc)
	addr := fs.String("address", DefaultStatusAddress, "the snapshotter's metrics server")
	out := fs.String("o", "", "write the profile to this file (default stdout)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("profile export takes one IMAGE")
	}
	u := strings.TrimSuffix(*addr, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/profile?image="+url.QueryEscape(pos[0]), nil)
	if err != nil {
		return fmt.Errorf("address %q: %w", *addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask socikit-snapshotter for the profile: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, profile.MaxEncodedSize+1))
	if err != nil {
		return fmt.Errorf("read profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 1000 {
			msg = msg[:1000] + "..."
		}
		if resp.StatusCode == http.StatusNotFound && msg == "404 page not found" {
			msg = "this snapshotter serves no /profile (an older version?)"
		}
		return fmt.Errorf("profile of %s from %s: %s: %s", pos[0], u, resp.Status, msg)
	}
	p, err := profile.Decode(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("profile of %s from %s: %w", pos[0], u, err)
	}
	if d := resp.Header.Get(headerProfileDropped); d != "" && d != "files=0 ranges=0" {
		e.warnf("the snapshotter's caps left reads out of the profile (%s): raise [profile] max_files / max_ranges", d)
	}
	if resp.Header.Get(headerProfileRecording) == "true" {
		e.warnf("a container of %s started less than [profile] window ago: the profile may still grow", pos[0])
	}
	if *out == "" {
		_, err := e.stdout.Write(body)
		return err
	}
	if err := writeProfileFile(*out, body); err != nil {
		return err
	}
	starts := resp.Header.Get(headerProfileStarts) + " container starts"
	switch starts {
	case " container starts":
		starts = "? container starts"
	case "1 container starts":
		starts = "1 container start"
	}
	platform := p.Platform
	if platform == "" {
		platform = "platform unknown"
	}
	fmt.Fprintf(e.stderr, "%s: %d files, %s in %s (%s, %s)\n", *out, len(p.Files), humanBytes(p.Bytes()),
		pluralRanges(p), platform, starts)
	return nil
}

func pluralRanges(p *profile.Profile) string {
	n := 0
	for _, f := range p.Files {
		n += len(f.Ranges)
	}
	if n == 1 {
		return "1 range"
	}
	return fmt.Sprintf("%d ranges", n)
}

// writeProfileFile writes b to name through a temporary file in the same
// directory, so a reader never sees half a profile.
func writeProfileFile(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
