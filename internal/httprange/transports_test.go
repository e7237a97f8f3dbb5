package httprange

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// TestRegistryTransportReused: the blobs of one repository, made one after
// the other with the same credentials (the layers of an image), share one
// authentication: one /v2/ ping and one token, not one per blob. Other
// credentials authenticate again.
func TestRegistryTransportReused(t *testing.T) {
	blobs := [][]byte{testBlob(t, 3000), testBlob(t, 4000)}
	var pings, tokens atomic.Int64
	var hs *httptest.Server
	hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			pings.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+hs.URL+`/token",service="test"`)
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/token":
			tokens.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"token":"t-` + r.URL.Query().Get("account") + `"}`))
		case strings.HasPrefix(r.URL.Path, "/v2/x/blobs/"):
			if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer t-") {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			for _, b := range blobs {
				if r.URL.Path == "/v2/x/blobs/"+digest.FromBytes(b).String() {
					http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
					return
				}
			}
			http.NotFound(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	defer hs.Close()
	repo, err := name.NewRepository(strings.TrimPrefix(hs.URL, "http://")+"/x", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	base := &http.Transport{} // a base of this test's own: no entry of another test
	read := func(kc authn.Keychain, b []byte) {
		t.Helper()
		hb, err := NewRegistryBlob(context.Background(), repo, digest.FromBytes(b), int64(len(b)), WithTransport(base), WithKeychain(kc))
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 100)
		if err := hb.ReadRanges(context.Background(), []Range{{Off: 1000, Buf: p}}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, b[1000:1100]) {
			t.Fatal("wrong bytes")
		}
	}
	alice := staticKeychain{authn.FromConfig(authn.AuthConfig{Username: "alice", Password: "a"})}
	read(alice, blobs[0])
	read(alice, blobs[1])
	if pings.Load() != 1 || tokens.Load() != 1 {
		t.Errorf("two blobs, same credentials: %d pings, %d tokens; want 1 and 1", pings.Load(), tokens.Load())
	}
	bob := staticKeychain{authn.FromConfig(authn.AuthConfig{Username: "bob", Password: "b"})}
	read(bob, blobs[0])
	if pings.Load() != 2 || tokens.Load() != 2 {
		t.Errorf("other credentials: %d pings, %d tokens in all; want 2 and 2", pings.Load(), tokens.Load())
	}
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }
