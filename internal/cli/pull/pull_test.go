package pull

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socikit/socikit/internal/cli"
)

func TestArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		err  string
	}{
		{nil, "one image reference"},
		{[]string{"a", "b"}, "one image reference"},
		{[]string{"Not A Ref"}, "image reference"},
		{[]string{"--nope", "busybox"}, "flag provided but not defined"},
	} {
		var stdout, stderr bytes.Buffer
		err := cli.Run(context.Background(), append([]string{"pull"}, c.args...), cli.WithOutput(&stdout, &stderr), cli.WithCommand(Command()))
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("pull %q: %v, want an error with %q", c.args, err, c.err)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := cli.Run(context.Background(), []string{"pull", "--help"}, cli.WithOutput(&stdout, &stderr), cli.WithCommand(Command())); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"-address", "-namespace", "-snapshotter", "-plain-http", "-platform"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("--help does not document %s", f)
		}
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	if u, p, err := credentials("registry-1.docker.io"); err != nil || u != "" || p != "" {
		t.Errorf("credentials = %q, %q, %v; want anonymous", u, p, err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	cfg := `{"auths":{"reg.example:5000":{"auth":"` + auth + `"},"https://index.docker.io/v1/":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"reg.example:5000", "registry-1.docker.io"} {
		if u, p, err := credentials(h); err != nil || u != "alice" || p != "s3cret" {
			t.Errorf("credentials(%s) = %q, %q, %v", h, u, p, err)
		}
	}
}
