package manager

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// testCA is a certificate authority made in the test: nothing is read from
// or written to files.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a certificate for name, valid for 127.0.0.1, usable by a
// server and a client.
func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLS runs a mutual-TLS server with an authoriser that wants the
// client's certificate name and a token, and dials it with good and bad
// clients.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	other := newTestCA(t, "other CA")
	serverCfg := &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "server")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
		MinVersion:   tls.VersionTLS12,
	}
	authorize := func(_ context.Context, c PeerCredentials) error {
		if len(c.Certificates) == 0 || c.Certificates[0].Subject.CommonName != "alpha" {
			return errors.New("unknown client")
		}
		if tok := c.Metadata.Get("courier-token"); len(tok) != 1 || tok[0] != "s3cret" {
			return errors.New("bad token")
		}
		return nil
	}
	recv := newCollector()
	server := newNode(t, recv, WithServerTLS(serverCfg), WithAuthorizer(authorize))
	once := WithReconnect(Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 1, MaxAttempts: 1})

	t.Run("good client", func(t *testing.T) {
		c := newNode(t, newCollector(), WithClientTLS(&tls.Config{
			RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "alpha")}, MinVersion: tls.VersionTLS13,
		}), WithHandshakeMetadata("courier-token", "s3cret"))
		if err := c.Send(context.Background(), server.Addr(), &Envelope{Target: "x", Payload: []byte("hi")}); err != nil {
			t.Fatal(err)
		}
		if got := recv.wait(t, 1, 20*time.Second); string(got[0].Payload) != "hi" {
			t.Fatalf("got %q", got[0].Payload)
		}
	})

	refused := func(t *testing.T, c *Manager, check func(err error) bool, want string) {
		t.Helper()
		ended := make(chan error, 1)
		unsub := c.Subscribe(func(e Event) {
			if e.Type == EventTerminated {
				ended <- e.Err
			}
		})
		defer unsub()
		sendToRefuser(t, c, server.Addr())
		select {
		case err := <-ended:
			if err == nil || !check(err) {
				t.Errorf("endpoint ended with %v, want %s", err, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the refused client's endpoint did not end")
		}
		if n := len(recv.snapshot()); n != 1 {
			t.Errorf("server delivered %d envelopes, want only the good client's", n)
		}
	}
	mentions := func(s string) func(error) bool {
		return func(err error) bool { return strings.Contains(err.Error(), s) }
	}
	t.Run("no client certificate", func(t *testing.T) {
		// TLS 1.2, so that the server's verdict on the client certificate
		// comes within the handshake; over TLS 1.3 it comes after, and the
		// dialer sees a closed connection (gRPC Unavailable).
		c := newNode(t, newCollector(), once, WithClientTLS(&tls.Config{RootCAs: ca.pool, MaxVersion: tls.VersionTLS12}))
		refused(t, c, mentions("authentication handshake failed"), "a TLS handshake error")
	})
	t.Run("wrong CA", func(t *testing.T) {
		c := newNode(t, newCollector(), once, WithClientTLS(&tls.Config{
			RootCAs: ca.pool, Certificates: []tls.Certificate{other.issue(t, "alpha")}, MaxVersion: tls.VersionTLS12,
		}))
		refused(t, c, mentions("authentication handshake failed"), "a TLS handshake error")
	})
	t.Run("authoriser refuses", func(t *testing.T) {
		c := newNode(t, newCollector(), once, WithClientTLS(&tls.Config{
			RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "alpha")}, MinVersion: tls.VersionTLS13,
		}), WithHandshakeMetadata("courier-token", "wrong"))
		refused(t, c, func(err error) bool {
			return errors.Is(err, ErrUnauthorized) && strings.Contains(err.Error(), "bad token")
		}, "ErrUnauthorized: bad token")
	})
	t.Run("plain text to a TLS server", func(t *testing.T) {
		c := newNode(t, newCollector(), once)
		refused(t, c, func(err error) bool { return err != nil }, "an error")
	})
}

func (c *collector) snapshot() []Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.envs)
}
