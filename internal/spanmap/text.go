package spanmap

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Write prints res as a short table: per layer the profile's files found
// in it, the bytes the start-up reads there, the spans those bytes touch
// and their compressed size (what a lazy start fetches), then the totals.
func Write(w io.Writer, res *Result, meta Meta) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{}
	if meta.IndexDigest != "" {
		head = append(head, "SOCI index "+string(meta.IndexDigest))
	}
	if meta.IndexVersion != "" {
		head = append(head, meta.IndexVersion)
	}
	if meta.Platform != "" {
		head = append(head, meta.Platform)
	}
	if len(head) > 0 {
		fmt.Fprintln(tw, strings.Join(head, ", "))
	}
	t := res.Totals
	if res.Profile {
		fmt.Fprintf(tw, "Profile: %d files, %s read; %d in no indexed layer\n\n", res.ProfileFiles, Bytes(res.ProfileBytes), res.NotFound)
	} else {
		fmt.Fprintf(tw, "No profile: prefetch only\n\n")
	}
	fmt.Fprintln(tw, "LAYER\tSPANS\tSIZE\tFILES\tREAD\tSPANS TOUCHED\tFETCHED\tON DEMAND\tPREFETCHED")
	for _, l := range res.Layers {
		if !l.Indexed {
			fmt.Fprintf(tw, "%s\t-\t%s\t-\t-\t-\t%s (no zTOC)\t-\t-\n", short(l.Digest), Bytes(l.Size), Bytes(l.Size))
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%d\t%s\t%s\t%d (%s)\n", short(l.Digest), l.Spans, Bytes(l.Size), l.FilesFound,
			Bytes(l.HotBytes), l.SpansTouched, Bytes(l.FetchBytes), Bytes(l.OnDemandBytes), l.PrefetchSpans, Bytes(l.PrefetchBytes))
	}
	fmt.Fprintf(tw, "TOTAL\t\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", Bytes(t.Size), t.FilesFound, Bytes(t.HotBytes), t.SpansTouched,
		Bytes(t.FetchBytes+t.WholeBytes), Bytes(t.OnDemandBytes), Bytes(t.PrefetchBytes))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nzTOCs: %s, %s%% of zTOCs + touched spans of indexed layers (%s)\n", Bytes(t.ZtocBytes), num(t.ZtocPercent),
		Bytes(t.ZtocBytes+t.FetchBytes))
	if t.WholeBytes > 0 {
		fmt.Fprintf(w, "Layers without zTOC: %s, pulled whole\n", Bytes(t.WholeBytes))
	}
	if res.Profile && t.PrefetchUnread > 0 {
		fmt.Fprintf(w, "Prefetched but not read at start-up: %s\n", Bytes(t.PrefetchUnread))
	}
	return nil
}
