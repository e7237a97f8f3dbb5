package report

import (
	"fmt"
	"math"
	"strings"

	"github.com/socikit/socikit/integration/harness/results"
)

// FloorRoundTrips is the number of dependent registry round trips the
// floor counts: the image index, the image manifest, the config and one
// read of data. A lazy start needs more (the SOCI index, its zTOCs): they
// are what the floor measures the contenders against.
const FloorRoundTrips = 4

// GoalFloor is the goal on time to ready / floor, for socikit-reorder and
// the profiled contender.
const GoalFloor = 1.3

// Floor is an image's physical floor of time to ready: the app's time to
// ready on a local unpacked rootfs with a cold page cache, plus the
// compressed bytes the start-up really reads at the link's rate, plus one
// link delay per dependent round trip.
type Floor struct {
	LocalMS     float64 // median LocalReadyMS of the overlayfs samples
	TransferMS  float64 // compressed bytes read / link rate (0 unshaped)
	RoundTripMS float64 // FloorRoundTrips × the link's delay per request
	Bytes       int64   // the compressed bytes read (byte ranges, else whole files)
}

// MS is the floor in milliseconds.
func (f Floor) MS() float64 { return f.LocalMS + f.TransferMS + f.RoundTripMS }

// floor returns im's floor, or false when the run has no local ready time
// for it (runs made before it was measured, or no overlayfs sample).
func (m *model) floor(im results.Image) (Floor, bool) {
	local := m.stat(im.Name, results.Overlayfs, func(s results.Sample) (float64, bool) {
		return s.LocalReadyMS, s.LocalReadyMS > 0
	})
	if local.N == 0 {
		return Floor{}, false
	}
	bytes, _ := ProfileBase(im)
	f := Floor{LocalMS: local.Median, Bytes: bytes, RoundTripMS: FloorRoundTrips * m.run.Link.LatencyMS}
	if r := m.run.Link.RateMbit; r > 0 {
		f.TransferMS = float64(bytes) * 8 / (r * 1e6) * 1000
	}
	return f, true
}

// floorRatio is a contender's median time to ready over im's floor.
func (m *model) floorRatio(im results.Image, c string) float64 {
	f, ok := m.floor(im)
	if !ok {
		return math.NaN()
	}
	return ratio(m.median(im.Name, c, readyS), f.MS()/1000)
}

// floorGoalContenders are the contenders the floor goal is checked for.
var floorGoalContenders = []string{results.SocikitReorder, results.SocikitProfiled}

// FloorChecks evaluates time to ready / floor ≤ GoalFloor for
// socikit-reorder and socikit-profiled (when measured) on every image with
// a floor.
func FloorChecks(r *results.Run) []Check { return newModel(r).floorChecks() }

func (m *model) floorChecks() []Check {
	var out []Check
	for _, im := range m.images {
		if _, ok := m.floor(im); !ok {
			continue
		}
		for _, c := range floorGoalContenders {
			if !m.measured(c) {
				continue
			}
			out = append(out, Check{im.Name, c, "time to ready / floor", GoalFloor, m.floorRatio(im, c)})
		}
	}
	return out
}

// writeFloor writes the Floor section: each image's floor and every
// contender's time to ready over it, with the goal's verdicts.
func (m *model) writeFloor(b *strings.Builder) {
	var rows [][]string
	var ims []results.Image
	for _, im := range m.images {
		f, ok := m.floor(im)
		if !ok {
			continue
		}
		ims = append(ims, im)
		rows = append(rows, []string{im.Name,
			fmt.Sprintf("%.2f", f.LocalMS/1000),
			fmt.Sprintf("%.2f (%s MB)", f.TransferMS/1000, mbString(f.Bytes)),
			fmt.Sprintf("%.2f", f.RoundTripMS/1000),
			fmt.Sprintf("%.2f", f.MS()/1000),
		})
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("## Floor\n\n")
	fmt.Fprintf(b, "The floor of an image's time to ready: the app's time to ready on the rootfs overlayfs unpacked, "+
		"page cache dropped (a second container, `ctr run` to the ready line; median of the overlayfs samples), plus the "+
		"compressed bytes the start-up reads (%s) at the link's rate, plus %d round trips of the link's delay per request "+
		"(image index, manifest, config, one data read). Seconds.\n\n", "byte ranges where measured, else its files whole", FloorRoundTrips)
	table(b, 1, []string{"image", "local ready", "transfer", "round trips", "floor"}, rows)
	b.WriteString("### Time to ready / floor\n\n")
	var rrows [][]string
	for _, im := range ims {
		row := []string{im.Name}
		for _, c := range m.contenders {
			row = append(row, ratioString(m.floorRatio(im, c)))
		}
		rrows = append(rrows, row)
	}
	table(b, 1, append([]string{"image"}, m.contenders...), rrows)
	checks := m.floorChecks()
	if len(checks) == 0 {
		return
	}
	var cells []string
	for _, ch := range checks {
		cells = append(cells, fmt.Sprintf("%s %s %s %s", ch.Image, ch.Contender, checkValue(ch), ch.Verdict()))
	}
	fmt.Fprintf(b, "Goal: time to ready / floor ≤ %s for %s: %s.\n\n", num(GoalFloor),
		strings.Join(floorGoalContenders, " and "), strings.Join(cells, "; "))
}
