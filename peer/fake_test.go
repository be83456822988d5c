package peer

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"github.com/courier-go/courier/reader"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// pipe is an in-memory Connect stream: frames travel as bytes, each way in
// order, until the pipe breaks.
type pipe struct {
	up, down   chan []byte   // dialer → listener, listener → dialer
	sendClosed chan struct{} // the dialer's CloseSend
	broken     chan struct{}
	closeOnce  sync.Once
	breakOnce  sync.Once
	err        error // why it broke; set before broken is closed
}

func newPipe() *pipe {
	return &pipe{up: make(chan []byte, 64), down: make(chan []byte, 64),
		sendClosed: make(chan struct{}), broken: make(chan struct{})}
}

// fail breaks the pipe: both ends' calls return err from now on.
func (p *pipe) fail(err error) {
	p.breakOnce.Do(func() {
		p.err = err
		close(p.broken)
	})
}

// frameBytes copies a frame given to SendMsg and releases it, as gRPC does
// once it has written it.
func frameBytes(m any) ([]byte, error) {
	bs, err := wire.Codec{}.Marshal(m)
	if err != nil {
		return nil, err
	}
	defer bs.Free()
	return bs.Materialize(), nil
}

func (p *pipe) send(ch chan []byte, m any) error {
	b, err := frameBytes(m)
	if err != nil {
		return err
	}
	select {
	case ch <- b:
		return nil
	case <-p.broken:
		return p.err
	}
}

func (p *pipe) recv(ch chan []byte, closed <-chan struct{}, m any) error {
	var b []byte
	select {
	case b = <-ch:
	case <-p.broken:
		select {
		case b = <-ch: // what was sent before the end is read first, as gRPC does
		default:
			return p.err
		}
	case <-closed:
		select {
		case b = <-ch: // frames sent before CloseSend come first
		default:
			return io.EOF
		}
	}
	return wire.Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m)
}

// dialerEnd is the pipe as the endpoint sees it.
type dialerEnd struct{ p *pipe }

func (d dialerEnd) SendMsg(m any) error { return d.p.send(d.p.up, m) }
func (d dialerEnd) RecvMsg(m any) error { return d.p.recv(d.p.down, nil, m) }
func (d dialerEnd) CloseSend() error {
	d.p.closeOnce.Do(func() { close(d.p.sendClosed) })
	return nil
}

// listenerEnd is the pipe as the remote node sees it.
type listenerEnd struct{ p *pipe }

func (l listenerEnd) SendMsg(m any) error { return l.p.send(l.p.down, m) }
func (l listenerEnd) RecvMsg(m any) error { return l.p.recv(l.p.up, l.p.sendClosed, m) }

// remote is a fake peer node: it answers handshakes with its identity (or
// refuses them), delivers what it receives once per incarnation and lane,
// and acknowledges it unless told not to.
type remote struct {
	node   wire.Node
	refuse func(h *courierv1.Hello) error // nil accepts
	noAck  atomic.Bool                    // deliver, but acknowledge nothing
	silent atomic.Bool                    // answer no heartbeat

	lanes [2]reader.LaneState
	mu    sync.Mutex
	got   [2][]string // targets delivered, by lane
}

func newRemote(systemID string, incarnation uint64) *remote {
	return &remote{node: wire.Node{SystemID: systemID, Incarnation: incarnation, Address: "remote:1", Limits: batch.DefaultLimits()}}
}

func (r *remote) delivered(l batch.Lane) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[l]...)
}

// serve runs the listener's side of one stream until it ends.
func (r *remote) serve(s listenerEnd) {
	hello, welcome, err := wire.Accept(context.Background(), s, handshakeTimeout, func(h *courierv1.Hello) (*courierv1.Welcome, error) {
		if r.refuse != nil {
			if err := r.refuse(h); err != nil {
				return nil, err
			}
		}
		return wire.NewWelcome(r.node, h), nil
	})
	if err != nil {
		s.p.fail(status.Error(codes.Unavailable, err.Error()))
		return
	}
	lane, _ := wire.LaneFromProto(hello.GetLane())
	ack := reader.AckInline(s)
	rcv := &reader.Receive{
		Stream: s,
		Peer:   reader.Peer{SystemID: hello.GetSystemId(), Incarnation: hello.GetIncarnation()},
		Lane:   lane,
		Limits: batch.LimitsFromProto(welcome.GetLimits(), batch.DefaultLimits()),
		Deliver: func(_ *reader.Peer, env *batch.Envelope) {
			r.mu.Lock()
			r.got[lane] = append(r.got[lane], env.Target)
			r.mu.Unlock()
		},
		State: &r.lanes[lane],
		Ack: func(pos uint64) error {
			if r.noAck.Load() {
				return nil
			}
			return ack(pos)
		},
		Heartbeat: func(nanos uint64) error {
			if r.silent.Load() {
				return nil
			}
			return reader.HeartbeatInline(s)(nanos)
		},
		Counters: new(reader.Counters),
	}
	rcv.Generation = rcv.State.Claim()
	err = rcv.Run()
	s.p.fail(status.Error(codes.Canceled, "stream ended: "+errText(err)))
}

func errText(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// network is a fake Dialer: each connection's streams are pipes to the
// remote that is current when they open.
type network struct {
	mu      sync.Mutex
	remote  *remote
	dialErr error // Dial fails with it, if set
	pipes   []*pipe
	wg      sync.WaitGroup
	dials   atomic.Int64 // connections dialed
	streams atomic.Int64 // streams opened
}

func newNetwork(t *testing.T, r *remote) *network {
	n := &network{remote: r}
	t.Cleanup(func() {
		n.breakAll(errors.New("test over"))
		n.wg.Wait()
	})
	return n
}

// use makes r the node later streams reach: a restart, or another node on
// the address.
func (n *network) use(r *remote) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.remote = r
}

// failDials makes every Dial fail with err (nil: succeed again).
func (n *network) failDials(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dialErr = err
}

// breakAll breaks every stream opened so far, as a lost connection does.
func (n *network) breakAll(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.pipes {
		p.fail(err)
	}
	n.pipes = nil
}

func (n *network) Dial(string) (Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dialErr != nil {
		return nil, n.dialErr
	}
	n.dials.Add(1)
	return fakeConn{n}, nil
}

type fakeConn struct{ n *network }

func (c fakeConn) Connect(ctx context.Context) (Stream, error) {
	n := c.n
	p := newPipe()
	n.mu.Lock()
	n.pipes = append(n.pipes, p)
	r := n.remote
	n.mu.Unlock()
	n.streams.Add(1)
	context.AfterFunc(ctx, func() { p.fail(status.Error(codes.Canceled, "context canceled")) })
	n.wg.Go(func() { r.serve(listenerEnd{p}) })
	return dialerEnd{p}, nil
}

func (c fakeConn) Close() error { return nil }
