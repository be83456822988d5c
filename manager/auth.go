package manager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// WithServerTLS makes the listener speak TLS with cfg. For mutual TLS set
// cfg.ClientAuth to tls.RequireAndVerifyClientCert and cfg.ClientCAs to the
// pool of the CAs that sign the clients' certificates. Default: plain text.
func WithServerTLS(cfg *tls.Config) Option {
	return optionFunc(func(o *options) { o.serverCreds = credentials.NewTLS(cfg) })
}

// WithClientTLS makes every connection the node dials speak TLS with cfg:
// cfg.RootCAs verifies the servers, and cfg.Certificates holds this node's
// client certificate for mutual TLS. Default: plain text.
func WithClientTLS(cfg *tls.Config) Option {
	return optionFunc(func(o *options) { o.clientCreds = credentials.NewTLS(cfg) })
}

// WithTransportCredentials sets gRPC transport credentials for the
// listener (server) and for the connections the node dials (client),
// either may be nil to keep the default; they win over WithServerTLS and
// WithClientTLS.
func WithTransportCredentials(server, client credentials.TransportCredentials) Option {
	return optionFunc(func(o *options) {
		if server != nil {
			o.serverCreds = server
		}
		if client != nil {
			o.clientCreds = client
		}
	})
}

// WithHandshakeMetadata adds key: value to the gRPC metadata of every
// stream the node opens, for the peer's authoriser (a shared token, for
// example).
func WithHandshakeMetadata(key, value string) Option {
	return optionFunc(func(o *options) { o.metadata = append(o.metadata, key, value) })
}

// PeerCredentials is what a listening node knows of a dialer when it
// decides whether to accept it: what its Hello states, the certificates it
// presented over mutual TLS, and the gRPC metadata of its stream.
type PeerCredentials struct {
	// Peer is the dialer as its Hello states it.
	Peer Peer
	// Certificates is the dialer's verified certificate chain, leaf first;
	// nil without mutual TLS.
	Certificates []*x509.Certificate
	// Metadata is the stream's gRPC metadata (see WithHandshakeMetadata).
	Metadata metadata.MD
}

// Authorizer decides whether a dialer may connect. A non-nil error refuses
// it before any of its frames is delivered; the dialer sees the refusal as
// ErrUnauthorized, with the error's text.
type Authorizer func(ctx context.Context, creds PeerCredentials) error

// WithAuthorizer sets the authoriser every stream's handshake must pass.
// Default: every dialer that passes TLS (if any) is accepted.
func WithAuthorizer(a Authorizer) Option {
	return optionFunc(func(o *options) { o.authorize = a })
}

// authorize runs the authoriser on a Hello; a refusal or a panic refuses
// the stream.
func (m *Manager) authorize(ctx context.Context, h *courierv1.Hello) error {
	return m.authorizePeer(ctx, Peer{SystemID: h.GetSystemId(), Address: h.GetAddress(), Incarnation: h.GetIncarnation()})
}

// authorizePeer runs the authoriser on a peer as it states itself, with the
// certificates and metadata of ctx's gRPC call (a stream or a unary call);
// a refusal or a panic is a *wire.RefusedError with reason unauthorized.
func (m *Manager) authorizePeer(ctx context.Context, caller Peer) (err error) {
	if m.o.authorize == nil {
		return nil
	}
	creds := PeerCredentials{Peer: caller}
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
			creds.Certificates = info.State.VerifiedChains[0]
		}
	}
	creds.Metadata, _ = metadata.FromIncomingContext(ctx)
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("authoriser panicked")
			m.log.Error("courier: authoriser panicked", "panic", r)
		}
		if err != nil {
			err = wire.Refuse(courierv1.RefuseReason_REFUSE_REASON_UNAUTHORIZED, "%v", err)
		}
	}()
	return m.o.authorize(ctx, creds)
}
