package service

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/content/proxy"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/socikit/socikit/internal/image"
)

// containerdContent reads SOCI artifacts (zTOCs, prefetch lists) from the
// content store of the containerd this daemon serves, so that a blob
// containerd fetched is not fetched a second time.
//
// Why containerd has them: pulled through the transfer service (`ctr image
// pull` on 2.x, CRI's default pull on 2.x), containerd walks every manifest
// of the image index whose platform matches, and the SOCI v2 index manifest
// sits there with the image's platform (the SOCI v2 layout); containerd
// treats it as an image manifest and fetches its "layers", the zTOCs, into
// its content store while it unpacks the image (docs/snapshotter.md,
// "zTOCs fetched twice"). A client-side pull (client.Pull, `socikit pull`,
// CRI with use_local_image_pull, nerdctl) keeps only the first matching
// manifest and does not.
//
// A blob is read from containerd when it is there, or when containerd is
// fetching it (an ingest of that digest is in progress and advancing) or
// is about to (it has the SOCI index manifest: its children are fetched
// next). Otherwise, or on any error, the caller fetches from the registry.
// What is read is verified against the descriptor.
type containerdContent struct {
	address string
	// poll is the interval between two looks at containerd's store; stall
	// how long an ingest may make no progress; grace how long to wait for
	// an ingest to start once containerd has the SOCI index manifest;
	// settle how long a blob may take to show once its ingest is gone.
	poll, stall, grace, settle time.Duration

	once  sync.Once
	store content.Store
	err   error
}

// newContainerdContent returns nil when address is empty.
func newContainerdContent(address string) *containerdContent {
	if address == "" {
		return nil
	}
	return &containerdContent{address: strings.TrimPrefix(address, "unix://"),
		poll: 25 * time.Millisecond, stall: 5 * time.Second, grace: 2 * time.Second, settle: time.Second}
}

// contentStore dials containerd once. The connection is lazy: a socket
// nobody listens on makes every call fail at once (no retry on ENOENT,
// unlike containerd's own dialer).
func (c *containerdContent) contentStore() (content.Store, error) {
	c.once.Do(func() {
		var d net.Dialer
		conn, err := grpc.NewClient("passthrough:///containerd",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", c.address)
			}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
		if err != nil {
			c.err = fmt.Errorf("containerd content store at %s: %w", c.address, err)
			return
		}
		c.store = proxy.NewContentStore(conn)
	})
	return c.store, c.err
}

// callTimeout bounds one call to containerd.
const callTimeout = 5 * time.Second

// read returns blob d (at most limit bytes) from containerd's content store,
// waiting while containerd fetches it; index is the SOCI index manifest d
// belongs to. ok is false when the caller must fetch d itself.
func (c *containerdContent) read(ctx context.Context, d ocispec.Descriptor, index digest.Digest, limit int64) (b []byte, ok bool) {
	if c == nil || d.Size > limit {
		return nil, false
	}
	ns, found := namespaces.Namespace(ctx)
	if !found || ns == "" {
		return nil, false
	}
	cs, err := c.contentStore()
	if err != nil {
		return nil, false
	}
	ctx = namespaces.WithNamespace(ctx, ns) // outgoing header
	lg := log.G(ctx).WithField("blob", d.Digest).WithField("containerd", c.address)
	start := time.Now()
	lastOffset, lastProgress := int64(-1), start
	var goneAt time.Time
	indexKnown := false
	for {
		switch b, have, err := c.readCommitted(ctx, cs, d); {
		case err != nil:
			lg.WithError(err).Debug("containerd's content store unusable for this blob")
			return nil, false
		case have:
			lg.WithField("waited", time.Since(start).Round(time.Millisecond)).Debug("read SOCI artifact from containerd's content store")
			return b, true
		}
		st, err := c.ingest(ctx, cs, d.Digest)
		if err != nil {
			lg.WithError(err).Debug("cannot list containerd's ingests")
			return nil, false
		}
		now := time.Now()
		switch {
		case st != nil:
			goneAt = time.Time{}
			if st.Offset != lastOffset {
				lastOffset, lastProgress = st.Offset, now
			} else if now.Sub(lastProgress) > c.stall {
				lg.Debug("containerd's fetch of the blob stalled")
				return nil, false
			}
		case lastOffset >= 0:
			// The ingest went away. A commit removes it from the backend
			// store before the blob shows in the metadata store, so look
			// again for a while before deciding the fetch failed.
			if goneAt.IsZero() {
				goneAt = now
			} else if now.Sub(goneAt) > c.settle {
				lg.Debug("containerd's fetch of the blob ended without it")
				return nil, false
			}
		default:
			// Not being fetched (yet): worth waiting only if containerd is
			// walking the SOCI index manifest, whose children it fetches
			// next.
			if !indexKnown && index != "" {
				indexKnown = c.has(ctx, cs, index)
			}
			if !indexKnown {
				lg.Debug("containerd is not fetching the blob")
				return nil, false
			}
			if now.Sub(start) > c.grace {
				lg.Debug("containerd has the SOCI index but did not start fetching the blob")
				return nil, false
			}
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(c.poll):
		}
	}
}

// readCommitted reads d if containerd has it (have false: it has not).
func (c *containerdContent) readCommitted(ctx context.Context, cs content.Store, d ocispec.Descriptor) (b []byte, have bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	info, err := cs.Info(cctx, d.Digest)
	if errdefs.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if d.Size > 0 && info.Size != d.Size {
		return nil, false, fmt.Errorf("containerd has %d bytes of %s, want %d", info.Size, d.Digest, d.Size)
	}
	if b, err = content.ReadBlob(cctx, cs, d); err != nil {
		return nil, false, err
	}
	if err := image.Verify(d, b); err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// ingest returns containerd's ingest of dg in progress, if any.
func (c *containerdContent) ingest(ctx context.Context, cs content.Store, dg digest.Digest) (*content.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	sts, err := cs.ListStatuses(cctx, fmt.Sprintf("ref~=%q", dg.Encoded()))
	if err != nil {
		return nil, err
	}
	for i := range sts {
		if sts[i].Expected == dg || strings.HasSuffix(sts[i].Ref, dg.String()) {
			return &sts[i], nil
		}
	}
	return nil, nil
}

// has reports whether containerd has dg or is fetching it.
func (c *containerdContent) has(ctx context.Context, cs content.Store, dg digest.Digest) bool {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := cs.Info(cctx, dg); err == nil {
		return true
	}
	st, err := c.ingest(ctx, cs, dg)
	return err == nil && st != nil
}
