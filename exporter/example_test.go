package exporter_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"

	"github.com/socikit/socikit/exporter"
)

// Example_buildLayer compresses a layer with its start-up file first and
// spans sized to its content.
func Example_buildLayer() {
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	for _, f := range []struct{ name, body string }{{"etc/motd", "hello"}, {"bin/app", "#!/bin/sh\necho hi\n"}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(f.body))})
		tw.Write([]byte(f.body))
	}
	tw.Close()

	var blob bytes.Buffer
	res, err := exporter.BuildLayer(context.Background(), &blob, bytes.NewReader(tarball.Bytes()), int64(tarball.Len()),
		exporter.WithStartupFiles([]string{"/bin/app"}), exporter.WithReorder(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Reordered, res.Ztoc.Files[0].Name, res.Prefetch, res.Size == int64(blob.Len()))
	// Output: [bin/app] bin/app [{0 0 0}] true
}
