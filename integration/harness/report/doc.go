// Package report turns one harness run (a results.Run) into the files a
// reader looks at. Write puts these into a directory:
//
//   - results.json: the Run itself, indented, with empty lists written
//     as [] rather than null. The same Run gives the same bytes.
//   - results.csv: one row per sample (header first), sorted by image
//     (in the Run's order), contender (in results.Contenders order) and
//     iteration. It adds the image's compressed size, the compressed
//     size of the files read before ready, and the link settings, so
//     that CSVs from several runs can be concatenated.
//   - summary.md: the Markdown summary (see Markdown): run header, one
//     table per image with median (min–max) of every metric per
//     contender (and of the FUSE requests before ready by kind, for the
//     socikit contenders of runs that recorded them), ratio tables, the
//     goals table with PASS/FAIL, and the failures.
//   - chart.png: grouped bars of the median time to ready (seconds) per
//     image and contender, whiskers from min to max.
//   - chart-bytes.png: the same for the MB fetched from the registry
//     before ready, with a dashed mark at the compressed size of the
//     files read before ready.
//   - timeline-<image>.png (images with timelines): the first cold
//     start of each contender, its registry requests over time by kind,
//     the end of the pull and the ready line; under a socikit contender,
//     the FUSE requests socikit-snapshotter answered, by kind, as rates
//     over ~100 ms intervals (WriteTimelineChart).
//
// Every figure is a median over the iterations of one (image,
// contender) cell; with an even count it is the mean of the two middle
// values. Ratios are median / median. MB are 10^6 bytes; RSS is in MiB.
// A missing contender, an image without samples, or a metric that was
// not measured (read_all_ms or peak_rss_kib of 0) shows as "–" in the
// tables and as n/a in the goals; it never makes the report fail.
//
// The goals checked (Checks) are those of the benchmark issue, for each
// socikit contender on each image:
//
//   - time to ready ≤ 0.2× overlayfs (meant for the large images; it is
//     checked on every image, and the image's compressed size is shown
//     so that the reader can tell which are large),
//   - time to ready ≤ 0.7× upstream SOCI,
//   - bytes before ready ≤ 1.3× the compressed size of the files read
//     before ready (results.Image.StartupCompressed),
//   - read everything ≤ 1.1× overlayfs reading everything, that is a
//     full pull followed by reading every file from local disk.
//
// socikit-profiled and socikit-lazyprofile (images built from a start-up
// profile) appear only in runs that measured them. For them ProfileChecks
// adds the goals of the start-up profile work, reported in their own
// table: time to ready ≤ 0.5× upstream SOCI and ≤ socikit-reorder's, bytes
// before ready ≤ 1.15× the compressed byte ranges read (ProfileBase), and
// the frontend build ≤ 1.3× the plain type=soci build, the traced
// start-up's time aside (results.Run.Builds, also in a table of its own).
package report
