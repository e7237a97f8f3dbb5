package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const sampleStatus = `{"images": [{"image": "127.0.0.1:5000/app:latest", "fetched_bytes": 3145728, "spans_cached": 3, "spans_total": 6,
  "layers": [
    {"layer": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "compressed_size": 1048576, "fetched_bytes": 1048576, "spans_cached": 1, "spans_total": 1},
    {"layer": "sha256:2222222222222222222222222222222222222222222222222222222222222222", "compressed_size": 10485760, "fetched_bytes": 2097152, "spans_cached": 2, "spans_total": 5, "verify_failures": 1, "last_error": "span 3: digest mismatch"}
  ]}]}`

func TestStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(sampleStatus))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"table", []string{"status", "--address", srv.URL}, []string{
			"IMAGE", "127.0.0.1:5000/app:latest  111111111111",
			"1.0 MiB  1.0 MiB  1/1  100.0%",
			"10.0 MiB  2.0 MiB  2/5  40.0%  0 fetch, 1 verify; last: span 3: digest mismatch",
			"(2 layers)", "3/6  50.0%",
		}},
		{"host-port", []string{"status", "--address", strings.TrimPrefix(srv.URL, "http://")}, []string{"(2 layers)"}},
		{"json", []string{"status", "--json", "--address", srv.URL}, []string{sampleStatus}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := Run(context.Background(), tc.args, WithOutput(&out, &errb)); err != nil {
				t.Fatalf("%v\n%s", err, errb.String())
			}
			got := strings.Join(strings.Fields(out.String()), " ") // columns padded by tabwriter
			for _, w := range tc.want {
				if !strings.Contains(got, strings.Join(strings.Fields(w), " ")) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestStatusErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"status", "--address", addr}, WithOutput(&out, &errb)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("404 from the server: err = %v", err)
	}
	srv.Close()
	if err := Run(context.Background(), []string{"status", "--address", addr}, WithOutput(&out, &errb)); err == nil {
		t.Error("no server: no error")
	}
	var empty bytes.Buffer
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"images": []}`)) }))
	defer srv.Close()
	if err := Run(context.Background(), []string{"status", "--address", srv.URL}, WithOutput(&empty, &errb)); err != nil || !strings.Contains(empty.String(), "no layers mounted lazily") {
		t.Errorf("empty status: %v, %q", err, empty.String())
	}
}
