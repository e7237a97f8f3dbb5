package buildkit

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/buildkit/exporter"
)

// stockExporter records the attributes the stock oci exporter is given.
type stockExporter struct{ attrs map[string]string }

var errStock = errors.New("stock exporter called")

func (s *stockExporter) Resolve(_ context.Context, _ int, attrs map[string]string) (exporter.ExporterInstance, error) {
	s.attrs = attrs
	return nil, errStock
}

func TestOCIResolve(t *testing.T) {
	for _, tc := range []struct {
		name      string
		attrs     map[string]string
		wantStock bool
		wantErr   string
		wantTar   bool
		wantStore bool
	}{
		{name: "no soci keys: stock", attrs: map[string]string{"name": "r/i:t", "tar": "false", "push": "true"}, wantStock: true},
		{name: "soci keys", attrs: map[string]string{"soci-min-layer-size": "0", "name": "r/i:t"}, wantTar: true},
		{name: "buildx case", attrs: map[string]string{"SOCI-Index": "v1"}, wantTar: true},
		{name: "tar=false", attrs: map[string]string{"soci-index": "v2", "tar": "false"}},
		{name: "store=true", attrs: map[string]string{"soci-index": "v2", "store": "true"}, wantTar: true, wantStore: true},
		{name: "push refused", attrs: map[string]string{"soci-index": "v2", "push": "true"}, wantErr: "type=soci,push=true"},
		{name: "push empty refused", attrs: map[string]string{"soci-index": "v2", "push": ""}, wantErr: "type=soci,push=true"},
		{name: "push=false accepted", attrs: map[string]string{"soci-index": "v2", "push": "false"}, wantTar: true},
		{name: "bad tar", attrs: map[string]string{"soci-index": "v2", "tar": "maybe"}, wantErr: "tar"},
		{name: "unknown soci key", attrs: map[string]string{"soci-nope": "1"}, wantErr: "soci-nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stock := &stockExporter{}
			e := &ociExporter{stock: stock, soci: &sociExporter{}}
			inst, err := e.Resolve(context.Background(), 7, tc.attrs)
			if tc.wantStock {
				if !errors.Is(err, errStock) {
					t.Fatalf("err %v, want the stock exporter's", err)
				}
				if diff := cmp.Diff(tc.attrs, stock.attrs); diff != "" {
					t.Errorf("stock attrs (-want +got):\n%s", diff)
				}
				return
			}
			if stock.attrs != nil {
				t.Fatalf("stock exporter called with %v", stock.attrs)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			oi := inst.(*ociInstance)
			if oi.Type() != "oci" || oi.ID() != 7 {
				t.Errorf("type %q id %d", oi.Type(), oi.ID())
			}
			if oi.tar != tc.wantTar || oi.store != tc.wantStore || oi.push {
				t.Errorf("tar %v store %v push %v, want tar %v store %v", oi.tar, oi.store, oi.push, tc.wantTar, tc.wantStore)
			}
			if diff := cmp.Diff(tc.attrs, oi.Attrs()); diff != "" {
				t.Errorf("attrs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNormalizedNames(t *testing.T) {
	got, err := normalizedNames("busybox,127.0.0.1:5000/a/b:t")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"docker.io/library/busybox:latest", "127.0.0.1:5000/a/b:t"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := normalizedNames("docker.io/library/Upper"); err == nil {
		t.Errorf("invalid name accepted")
	}
}
