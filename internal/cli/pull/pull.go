// Package pull is `socikit pull`: it pulls an image through a containerd
// daemon's API with the client-side pull (the client resolves and fetches
// into containerd's content store and unpacks through its snapshotter) and
// passes the remote snapshot labels, so that socikit-snapshotter mounts the
// indexed layers lazily. It works with containerd 2.x and with 1.6, whose
// own `ctr image pull` unpacks without those labels. docs/cli.md.
//
// It is a package of its own because it needs containerd's client, which
// internal/cli keeps out of its dependencies; cmd/socikit registers it with
// cli.WithCommand.
package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/snapshotters"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/socikit/socikit/internal/cli"
	"github.com/socikit/socikit/internal/progress"
)

// Defaults of the flags (the environment variables ctr reads override the
// first two).
const (
	DefaultAddress     = "/run/containerd/containerd.sock"
	DefaultNamespace   = namespaces.Default
	DefaultSnapshotter = "socikit"
)

// Command returns the `pull` subcommand.
func Command() cli.Command {
	return cli.Command{Name: "pull", Summary: "pull an image into containerd for lazy loading (containerd 1.6 and 2.x)", Run: run}
}

const doc = `Pull REF into containerd and unpack it into a snapshotter (default socikit)
with the remote snapshot labels (image reference, manifest and layer
digests), so that socikit-snapshotter mounts the layers of a SOCI-indexed
image lazily instead of containerd downloading them. The pull runs in this
process through containerd's API (content store, snapshotter, images), as
nerdctl and CRI's local pull do, so it works where the daemon's own pull
does not pass those labels (containerd 1.6's ctr). Of an image index, only
the platform's image manifest is fetched: containerd does not also fetch the
SOCI index's zTOCs. Prints the digest of the image pulled; stderr shows the
blobs fetched (--progress).
REF without a registry is a Docker Hub reference (busybox:
docker.io/library/busybox:latest). Credentials come from the docker config.
`

func run(ctx context.Context, stdout, stderr io.Writer, args []string) error {
	fs := cli.NewFlagSet(stderr, "pull", "[flags] REF", doc)
	address := fs.String("address", envOr("CONTAINERD_ADDRESS", DefaultAddress), "containerd's socket (env CONTAINERD_ADDRESS)")
	namespace := fs.String("namespace", envOr("CONTAINERD_NAMESPACE", DefaultNamespace), "containerd namespace (env CONTAINERD_NAMESPACE)")
	snapshotter := fs.String("snapshotter", DefaultSnapshotter, "snapshotter to unpack into")
	plainHTTP := fs.Bool("plain-http", false, "talk plain HTTP to the registry")
	platform := fs.String("platform", "", "platform to pull, os/arch[/variant] (default: containerd's, the host's)")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: no limit)")
	progressMode := cli.ProgressFlag(fs)
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("pull takes one image reference")
	}
	named, err := reference.ParseDockerRef(pos[0])
	if err != nil {
		return fmt.Errorf("pull: image reference %q: %w", pos[0], err)
	}
	ref := named.String()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	client, err := containerd.New(*address, containerd.WithDefaultNamespace(*namespace))
	if err != nil {
		return fmt.Errorf("pull: connect to containerd at %s: %w", *address, err)
	}
	defer client.Close()

	prog := progress.New(stderr, *progressMode)
	defer prog.Wait()
	track := newTracker(prog, client.ContentStore())
	if prog.Mode() == progress.Bars {
		pctx, stop := context.WithCancel(ctx)
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			track.poll(pctx, 100*time.Millisecond)
		}()
		defer func() {
			stop()
			<-polled
		}()
	}

	hosts := config.HostOptions{Credentials: credentials}
	if *plainHTTP {
		hosts.DefaultScheme = "http"
	}
	opts := []containerd.RemoteOpt{
		containerd.WithResolver(docker.NewResolver(docker.ResolverOptions{Hosts: config.ConfigureHosts(ctx, hosts)})),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(*snapshotter),
		// The labels remote snapshotters read (stargz's rpull, nerdctl and
		// CRI pass the same), and the progress of each blob.
		containerd.WithImageHandlerWrapper(func(h images.Handler) images.Handler {
			return snapshotters.AppendInfoHandlerWrapper(ref)(track.wrap(h))
		}),
	}
	if *platform != "" {
		opts = append(opts, containerd.WithPlatform(*platform))
	}
	start := time.Now()
	img, err := client.Pull(ctx, ref, opts...)
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	prog.Printf("pulled %s into %s in %v", img.Name(), *snapshotter, time.Since(start).Round(time.Millisecond))
	fmt.Fprintln(stdout, img.Target().Digest)
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// credentials answers containerd's resolver from the docker config
// (~/.docker/config.json, credential helpers) through go-containerregistry's
// default keychain, as the other socikit commands do. An identity token is
// returned as containerd expects a refresh token: empty user name.
func credentials(host string) (string, string, error) {
	if host == "registry-1.docker.io" {
		host = name.DefaultRegistry
	}
	reg, err := name.NewRegistry(host)
	if err != nil {
		return "", "", nil
	}
	a, err := authn.DefaultKeychain.Resolve(reg)
	if err != nil {
		return "", "", fmt.Errorf("credentials for %s: %w", host, err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		return "", "", fmt.Errorf("credentials for %s: %w", host, err)
	}
	if cfg.IdentityToken != "" {
		return "", cfg.IdentityToken, nil
	}
	return cfg.Username, cfg.Password, nil
}
