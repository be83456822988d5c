// Command tls shows courier over mutual TLS with an authoriser. At start it
// makes, in memory, a certificate authority, a server certificate for
// 127.0.0.1 and a client certificate with common name "client". The server
// node requires a client certificate signed by that CA, and its authoriser
// also requires the common name "client" and the token the client puts in
// its handshake metadata (WithHandshakeMetadata). A client with the right
// token gets a message through and an answer back; a client with the same
// certificate but a wrong token is refused, and its EventPeerRefused carries
// an error that wraps manager.ErrUnauthorized.
//
// Run it with:
//
//	go run ./examples/tls
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"time"

	"github.com/courier-go/courier/manager"
)

// patience bounds each wait: generous, since a loaded machine can be slow.
const patience = 30 * time.Second

const token = "s3cret"

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	ca, err := newCert("example CA", nil)
	if err != nil {
		return err
	}
	serverCert, err := newCert("server", ca)
	if err != nil {
		return err
	}
	clientCert, err := newCert("client", ca)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)

	var server *manager.Manager
	server, err = manager.New(
		manager.WithListenAddress("127.0.0.1:0"),
		manager.WithSystemID("server"),
		manager.WithServerTLS(&tls.Config{
			Certificates: []tls.Certificate{*serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS13,
		}),
		manager.WithAuthorizer(func(_ context.Context, c manager.PeerCredentials) error {
			if len(c.Certificates) == 0 || c.Certificates[0].Subject.CommonName != "client" {
				return errors.New(`certificate common name is not "client"`)
			}
			if got := c.Metadata.Get("token"); len(got) != 1 || got[0] != token {
				return fmt.Errorf("bad token from %s", c.Peer.SystemID)
			}
			return nil
		}),
		manager.WithHandler(manager.HandlerFunc(func(from manager.Peer, env *manager.Envelope) {
			fmt.Printf("server: %q from %s, answering\n", env.Payload, from.SystemID)
			reply := &manager.Envelope{Target: env.SenderID, Payload: []byte("welcome")}
			if err := server.Send(ctx, from.Address, reply); err != nil {
				log.Printf("server: reply: %v", err)
			}
		})),
	)
	if err != nil {
		return err
	}
	if err := server.Start(ctx); err != nil {
		return err
	}
	defer closeNode(server)
	serverRefused := make(chan manager.Event, 16)
	server.Subscribe(func(e manager.Event) {
		if e.Type == manager.EventPeerRefused {
			serverRefused <- e
		}
	})
	fmt.Printf("server listens on %s with mutual TLS\n", server.Addr())

	// Both clients are client-only (no listener): the server answers over
	// the streams they open. Events and dead letters come from courier's
	// goroutines; main prints them, in order.
	clientTLS := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{*clientCert}, MinVersion: tls.VersionTLS13}
	answers := make(chan string, 1)
	good, err := manager.New(
		manager.WithSystemID("good-client"),
		manager.WithClientTLS(clientTLS),
		manager.WithHandshakeMetadata("token", token),
		manager.WithHandler(manager.HandlerFunc(func(_ manager.Peer, env *manager.Envelope) {
			answers <- string(env.Payload)
		})),
	)
	if err != nil {
		return err
	}
	defer closeNode(good)
	if err := good.Send(ctx, server.Addr(), &manager.Envelope{Target: "greeter", SenderID: "main", Payload: []byte("hello")}); err != nil {
		return err
	}
	answer, err := wait(answers, "good-client: answer")
	if err != nil {
		return err
	}
	fmt.Printf("good-client: got %q\n", answer)

	// The bad client: the same certificate, a wrong token, and a reconnect
	// policy that gives up after one attempt.
	dead := make(chan manager.DeadLetter, 1)
	bad, err := manager.New(
		manager.WithSystemID("bad-client"),
		manager.WithClientTLS(clientTLS),
		manager.WithHandshakeMetadata("token", "guess"),
		manager.WithReconnect(manager.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 1, MaxAttempts: 1}),
		manager.WithDeadLetterHandler(func(d manager.DeadLetter) { dead <- d }),
		manager.WithHandler(manager.HandlerFunc(func(manager.Peer, *manager.Envelope) {})),
	)
	if err != nil {
		return err
	}
	defer closeNode(bad)
	refused, terminated := make(chan manager.Event, 16), make(chan manager.Event, 16)
	bad.Subscribe(func(e manager.Event) {
		switch e.Type {
		case manager.EventPeerRefused:
			refused <- e
		case manager.EventTerminated:
			terminated <- e
		}
	})
	if err := bad.Send(ctx, server.Addr(), &manager.Envelope{Target: "greeter", SenderID: "main", Payload: []byte("let me in")}); err != nil {
		return err
	}
	e, err := wait(refused, "bad-client: refusal")
	if err != nil {
		return err
	}
	fmt.Printf("bad-client: %s by %s: %v\n", e.Type, e.Address, e.Err)
	fmt.Printf("bad-client: errors.Is(err, manager.ErrUnauthorized) = %v\n", errors.Is(e.Err, manager.ErrUnauthorized))
	if !errors.Is(e.Err, manager.ErrUnauthorized) {
		return errors.New("the refusal is not ErrUnauthorized")
	}
	if e, err = wait(terminated, "bad-client: termination"); err != nil {
		return err
	}
	fmt.Printf("bad-client: endpoint %s, reason %q\n", e.Type, e.Reason)
	d, err := wait(dead, "bad-client: dead letter")
	if err != nil {
		return err
	}
	fmt.Printf("bad-client: dead letter %q: %s\n", d.Envelope.Payload, d.Reason)
	if e, err = wait(serverRefused, "server: refusal"); err != nil {
		return err
	}
	fmt.Printf("server: %s %s: %v\n", e.Type, e.Peer.SystemID, e.Err)
	return nil
}

// wait returns the next value from ch, or an error after patience.
func wait[T any](ch <-chan T, what string) (T, error) {
	select {
	case v := <-ch:
		return v, nil
	case <-time.After(patience):
		var zero T
		return zero, fmt.Errorf("%s: nothing within %v", what, patience)
	}
}

// newCert makes an ECDSA P-256 certificate named cn: a self-signed CA when
// parent is nil, else a leaf for 127.0.0.1 signed by parent.
func newCert(cn string, parent *tls.Certificate) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	signer, signerKey := tmpl, any(key)
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		signer, signerKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// closeNode flushes and stops m, giving it 5s.
func closeNode(m *manager.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		log.Printf("close %s: %v", m.SystemID(), err)
	}
}
