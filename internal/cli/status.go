package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socikit/socikit/internal/statusapi"
)

// DefaultStatusAddress is where `socikit status` and `socikit profile
// export` look for the snapshotter's metrics server by default: the
// address the daemon serves it on unless its metrics_address says
// otherwise.
const DefaultStatusAddress = statusapi.DefaultAddress

const statusDoc = `Show what socikit-snapshotter has fetched of the images it mounted lazily:
per image and layer, the compressed bytes fetched from the registry and the
share of the layer's spans present in the cache. ADDRESS is the
snapshotter's metrics_address (host:port or an http:// URL).
`

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "status", "[--address ADDRESS] [--json]", statusDoc)
	addr := fs.String("address", DefaultStatusAddress, "the snapshotter's metrics server")
	asJSON := fs.Bool("json", false, "print the snapshotter's JSON document as it is")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("status takes no arguments")
	}
	u := strings.TrimSuffix(*addr, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+statusapi.StatusPath, nil)
	if err != nil {
		return fmt.Errorf("status address %q: %w", *addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask socikit-snapshotter for its status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status from %s: %s", u, resp.Status)
	}
	var st statusapi.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("parse status from %s: %w", u, err)
	}
	if *asJSON {
		_, err := e.stdout.Write(body)
		return err
	}
	return writeStatusTable(e.stdout, &st)
}

func writeStatusTable(w io.Writer, st *statusapi.Status) error {
	if len(st.Images) == 0 {
		_, err := fmt.Fprintln(w, "no layers mounted lazily")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tLAYER\tSIZE\tFETCHED\tSPANS\tPRESENT\tERRORS")
	pct := func(a, b int) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
	}
	for _, img := range st.Images {
		var size int64
		for _, l := range img.Layers {
			size += l.CompressedSize
			errs := ""
			if n := l.FetchErrors + l.VerifyFailures; n > 0 {
				errs = fmt.Sprintf("%d fetch, %d verify", l.FetchErrors, l.VerifyFailures)
			}
			if l.LastError != "" {
				errs = strings.TrimPrefix(errs+"; ", "; ") + "last: " + l.LastError
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", img.Image, shortDigest(l.Layer), humanBytes(l.CompressedSize),
				humanBytes(l.FetchedBytes), l.SpansCached, l.SpansTotal, pct(l.SpansCached, l.SpansTotal), errs)
		}
		fmt.Fprintf(tw, "%s\t(%d layers)\t%s\t%s\t%d/%d\t%s\t\n", img.Image, len(img.Layers), humanBytes(size),
			humanBytes(img.FetchedBytes), img.SpansCached, img.SpansTotal, pct(img.SpansCached, img.SpansTotal))
	}
	return tw.Flush()
}

func shortDigest(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return hex[:12]
	}
	return d
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
