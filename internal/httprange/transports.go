package httprange

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// defaultTransport is the base transport of the blobs made without one:
// one, so that their connections and authenticated transports are shared,
// with room for the idle connections of several layers' concurrent range
// requests to one registry (net/http keeps 2 per host by default).
var defaultTransport http.RoundTripper = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 32
	return t
}()

// transportTTL bounds how long an authenticated transport is reused.
// A bearer token that expires meanwhile is refreshed by the transport on
// the registry's 401.
const transportTTL = 10 * time.Minute

// registryTransports keeps the authenticated transports NewRegistryBlob
// makes, by base transport, repository and credentials: making one costs
// a round trip to the registry (the /v2/ ping) and, with token auth, a
// token request, and the layers of an image are mounted one after the
// other, each with a blob of its own — these round trips were on every
// layer's mount.
var registryTransports = &transportCache{m: make(map[transportKey]cachedTransport)}

type transportKey struct {
	base  http.RoundTripper
	repo  string // registry and repository, with the scheme (name.Insecure)
	creds [sha256.Size]byte
}

type cachedTransport struct {
	rt   http.RoundTripper
	made time.Time
}

type transportCache struct {
	mu sync.Mutex
	m  map[transportKey]cachedTransport
}

// get returns the cached transport for repo, auth and base, or makes one
// (transport.NewWithContext) and keeps it. A base transport of a type
// that cannot be a map key, or credentials that cannot be read, are not
// cached.
func (c *transportCache) get(ctx context.Context, repo name.Repository, auth authn.Authenticator, base http.RoundTripper) (http.RoundTripper, error) {
	newRT := func() (http.RoundTripper, error) {
		return transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	}
	if t := reflect.TypeOf(base); t == nil || !t.Comparable() {
		return newRT()
	}
	cfg, err := authn.Authorization(ctx, auth)
	if err != nil {
		return newRT()
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return newRT()
	}
	key := transportKey{base: base, repo: repo.Registry.Scheme() + "://" + repo.Name(), creds: sha256.Sum256(cb)}
	now := time.Now()
	c.mu.Lock()
	if e, ok := c.m[key]; ok && now.Sub(e.made) < transportTTL {
		c.mu.Unlock()
		return e.rt, nil
	}
	c.mu.Unlock()
	rt, err := newRT()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if now.Sub(e.made) >= transportTTL {
			delete(c.m, k)
		}
	}
	c.m[key] = cachedTransport{rt: rt, made: now}
	return rt, nil
}
