package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socikit/socikit/profile"
)

const sampleProfile = `{"version":"socikit.profile.v1","platform":"linux/amd64","source":"snapshotter","files":[{"path":"/bin/sh","ranges":[[0,8192],[65536,4096]]},{"path":"/etc/passwd","ranges":[[0,512]]}]}` + "\n"

// profileServer answers /profile as socikit-snapshotter does, for image
// 127.0.0.1:5000/app:latest only.
func profileServer(t *testing.T, headers map[string]string) (*httptest.Server, *[]string) {
	t.Helper()
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/profile" {
			http.NotFound(w, r)
			return
		}
		img := r.URL.Query().Get("image")
		queries = append(queries, img)
		if img != "127.0.0.1:5000/app:latest" {
			http.Error(w, `no start-up profile recorded for image "`+img+`"; images with a profile: "127.0.0.1:5000/app:latest"`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", profile.MediaType)
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.Write([]byte(sampleProfile))
	}))
	t.Cleanup(srv.Close)
	return srv, &queries
}

func TestProfileExport(t *testing.T) {
	srv, queries := profileServer(t, map[string]string{headerProfileStarts: "2", headerProfileDropped: "files=0 ranges=0", headerProfileRecording: "false"})
	ctx := context.Background()

	// stdout, the address as host:port.
	var out, errb bytes.Buffer
	if err := Run(ctx, []string{"profile", "export", "--address", strings.TrimPrefix(srv.URL, "http://"), "127.0.0.1:5000/app:latest"},
		WithOutput(&out, &errb)); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if out.String() != sampleProfile || errb.Len() != 0 {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
	if len(*queries) != 1 || (*queries)[0] != "127.0.0.1:5000/app:latest" {
		t.Errorf("queries %q", *queries)
	}

	// -o FILE, flags after the image.
	file := filepath.Join(t.TempDir(), "profile.json")
	out.Reset()
	errb.Reset()
	if err := Run(ctx, []string{"profile", "export", "127.0.0.1:5000/app:latest", "--address", srv.URL, "-o", file}, WithOutput(&out, &errb)); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	b, err := os.ReadFile(file)
	if err != nil || string(b) != sampleProfile {
		t.Fatalf("file: %q %v", b, err)
	}
	p, err := profile.Decode(bytes.NewReader(b))
	if err != nil || len(p.Files) != 2 {
		t.Fatalf("decode: %+v %v", p, err)
	}
	if out.Len() != 0 || !strings.Contains(errb.String(), "2 files, 12.5 KiB in 3 ranges (linux/amd64, 2 container starts)") {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*tmp*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func TestProfileExportWarnings(t *testing.T) {
	srv, _ := profileServer(t, map[string]string{headerProfileDropped: "files=3 ranges=0", headerProfileRecording: "true"})
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"profile", "export", "--address", srv.URL, "127.0.0.1:5000/app:latest"}, WithOutput(&out, &errb)); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"files=3 ranges=0", "max_files", "may still grow"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("stderr lacks %q: %s", w, errb.String())
		}
	}
}

func TestProfileExportErrors(t *testing.T) {
	srv, _ := profileServer(t, nil)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"version":"v0"}`)) }))
	defer bad.Close()
	old := httptest.NewServer(http.NotFoundHandler())
	defer old.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown image", []string{"profile", "export", "--address", srv.URL, "other:1"}, `404 Not Found: no start-up profile recorded for image "other:1"`},
		{"not a profile", []string{"profile", "export", "--address", bad.URL, "x"}, "not supported"},
		{"old snapshotter", []string{"profile", "export", "--address", old.URL, "x"}, "serves no /profile"},
		{"no image", []string{"profile", "export", "--address", srv.URL}, "one IMAGE"},
		{"two images", []string{"profile", "export", "--address", srv.URL, "a", "b"}, "one IMAGE"},
		{"no subcommand", []string{"profile"}, "no subcommand"},
		{"unknown subcommand", []string{"profile", "import"}, `unknown subcommand "import"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := Run(ctx, tc.args, WithOutput(&out, &errb))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q", out.String())
			}
		})
	}
	srv.Close()
	var out, errb bytes.Buffer
	if err := Run(ctx, []string{"profile", "export", "--address", srv.URL, "127.0.0.1:5000/app:latest"}, WithOutput(&out, &errb)); err == nil {
		t.Error("no server: no error")
	}
}
