package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/bench/compare/pb"
	"github.com/courier-go/courier/contrib/protoactor/courierremote"
	"github.com/courier-go/courier/manager"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

func init() {
	register(courierImpl{})
	register(protoactorImpl{label: "protoactor-default"})
	register(protoactorImpl{label: "protoactor-batch", batch: manager.DefaultBatchEnvelopes})
	register(protoactorImpl{label: "protoactor-courier", courier: true})
	register(protoactorLocalImpl{})
	register(grpcImpl{batched: false})
	register(grpcImpl{batched: true})
	register(grpcCeilingImpl{})
	register(tcpImpl{})
}

// courier ---------------------------------------------------------------

type courierImpl struct{}

func (courierImpl) name() string { return "courier" }

func (courierImpl) serve(slow time.Duration) (string, error) {
	var m *manager.Manager
	m, err := manager.New(manager.WithListenAddress("127.0.0.1:0"), manager.WithHandler(manager.HandlerFunc(
		func(from manager.Peer, env *manager.Envelope) {
			if env.Lane == batch.LaneSystem { // a probe: answer it on the system lane
				if len(env.Payload) == 8 {
					arrived(int64(binary.LittleEndian.Uint64(env.Payload)))
				}
				reply := &manager.Envelope{Target: env.SenderID, Lane: batch.LaneSystem, RequestID: env.RequestID}
				go func() { _ = m.Send(context.Background(), from.Address, reply) }()
				return
			}
			delivered.Add(1)
			if slow > 0 {
				time.Sleep(slow)
			}
		})))
	if err != nil {
		return "", err
	}
	if err := m.Start(context.Background()); err != nil {
		return "", err
	}
	return m.Addr(), nil
}

type courierSender struct {
	m       *manager.Manager
	addr    string
	env     manager.Envelope
	mu      sync.Mutex
	waiting map[uint64]chan struct{}
	next    atomic.Uint64
}

func (courierImpl) dial(addr string) (sender, error) {
	s := &courierSender{addr: addr, waiting: map[uint64]chan struct{}{},
		env: manager.Envelope{Target: "sink", TypeName: "compare.Payload", SenderID: "bench"}}
	m, err := manager.New(manager.WithOverflowPolicy(manager.Block), manager.WithHandler(manager.HandlerFunc(
		func(_ manager.Peer, env *manager.Envelope) {
			s.mu.Lock()
			ch := s.waiting[env.RequestID]
			delete(s.waiting, env.RequestID)
			s.mu.Unlock()
			if ch != nil {
				close(ch)
			}
		})))
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

func (s *courierSender) send(payload []byte) error {
	env := s.env
	env.Payload = payload // the same protobuf-free bytes every implementation sends
	return s.m.Send(context.Background(), s.addr, &env)
}

func (s *courierSender) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.m.Close(ctx)
}

// probe times system-lane round trips: a system envelope to the peer and
// its answer back, while the user lane is flooded. Each probe carries its
// send time, so the child also times its way there alone.
func (courierImpl) probe(snd sender, n int, timeout time.Duration) (map[string][]time.Duration, error) {
	s := snd.(*courierSender)
	var lat []time.Duration
	for range n {
		id := s.next.Add(1)
		ch := make(chan struct{})
		s.mu.Lock()
		s.waiting[id] = ch
		s.mu.Unlock()
		start := time.Now()
		env := &manager.Envelope{Target: "probe", SenderID: "bench", Lane: batch.LaneSystem, Kind: batch.KindStop, RequestID: id,
			Payload: binary.LittleEndian.AppendUint64(nil, uint64(start.UnixNano()))}
		if err := s.m.Send(context.Background(), s.addr, env); err != nil {
			return nil, err
		}
		select {
		case <-ch:
			lat = append(lat, time.Since(start))
		case <-time.After(timeout):
			lat = append(lat, timeout)
			return map[string][]time.Duration{"system round trip": lat}, errProbeTimeout
		}
		time.Sleep(probeGap)
	}
	return map[string][]time.Duration{"system round trip": lat}, nil
}

// protoactor-go -----------------------------------------------------------

// protoactorImpl is protoactor-go with a remote layer: its own (with its
// defaults or a larger batch) or courier through courierremote. Every
// variant runs the same actors with the same messages.
type protoactorImpl struct {
	label   string
	batch   int  // 0: protoactor's default
	courier bool // courier through courierremote instead of protoactor-go's remote
}

func (p protoactorImpl) name() string { return p.label }

func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
}

// startRemote starts the variant's remote layer on system and returns the
// function that stops it. Over courier, both nodes wait for room in a full
// queue (manager.Block, as the courier row's sender does) instead of
// dead-lettering: protoactor-go's remote queues up to a million messages
// per endpoint, and the ping/pong scenario keeps 16 000 in flight.
func (p protoactorImpl) startRemote(system *actor.ActorSystem) (stop func(), err error) {
	if p.courier {
		r, err := courierremote.Start(context.Background(), system, courierremote.Configure("127.0.0.1", 0),
			manager.WithOverflowPolicy(manager.Block))
		if err != nil {
			return nil, err
		}
		return func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = r.Shutdown(ctx)
		}, nil
	}
	var opts []remote.ConfigOption
	if p.batch > 0 {
		opts = append(opts, remote.WithEndpointWriterBatchSize(p.batch))
	}
	r := remote.NewRemote(system, remote.Configure("127.0.0.1", 0, opts...))
	r.Start()
	return func() { r.Shutdown(false) }, nil
}

func (p protoactorImpl) serve(slow time.Duration) (string, error) {
	system := quietSystem()
	if _, err := p.startRemote(system); err != nil {
		return "", err
	}
	sink := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*pb.Payload); ok {
			delivered.Add(1)
			if slow > 0 {
				time.Sleep(slow)
			}
		}
	})
	echo := actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*pb.Request); ok {
			ctx.Respond(&pb.Response{SentUnixNano: m.SentUnixNano})
		}
	})
	// ponger answers the ping/pong scenario's pings, counting them.
	ponger := actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*pb.Request); ok {
			delivered.Add(1)
			ctx.Respond(&pb.Response{})
		}
	})
	for name, props := range map[string]*actor.Props{"sink": sink, "echo": echo} {
		if _, err := system.Root.SpawnNamed(props, name); err != nil {
			return "", err
		}
	}
	for i := range maxPairs {
		if _, err := system.Root.SpawnNamed(ponger, pongerName(i)); err != nil {
			return "", err
		}
	}
	// The actors the probe watches and stops, there before the flood.
	for i := range probes {
		if _, err := system.Root.SpawnNamed(actor.PropsFromFunc(func(actor.Context) {}), victimName(i)); err != nil {
			return "", err
		}
	}
	return system.Address(), nil
}

type protoactorSender struct {
	system *actor.ActorSystem
	stop   func()
	sink   *actor.PID
	addr   string
}

func (p protoactorImpl) dial(addr string) (sender, error) {
	system := quietSystem()
	stop, err := p.startRemote(system)
	if err != nil {
		return nil, err
	}
	return &protoactorSender{system: system, stop: stop, sink: actor.NewPID(addr, "sink"), addr: addr}, nil
}

func (s *protoactorSender) send(payload []byte) error {
	s.system.Root.Send(s.sink, &pb.Payload{Data: payload})
	return nil
}

func (s *protoactorSender) close() {
	s.stop()
	s.system.Shutdown()
}

// probe times what a protoactor-go user does for control while the flood
// runs: a request/response to a second actor on the receiving node, and a
// watch of a remote actor that is then stopped, until Terminated arrives.
func (p protoactorImpl) probe(snd sender, n int, timeout time.Duration) (map[string][]time.Duration, error) {
	s := snd.(*protoactorSender)
	echo := actor.NewPID(s.addr, "echo")
	var rr, term []time.Duration
	// Each kind of probe stops at its first timeout, the other goes on.
	rrDone, termDone := false, false
	for i := range min(n, probes) {
		if rrDone && termDone {
			break
		}
		if !rrDone {
			start := time.Now()
			_, err := s.system.Root.RequestFuture(echo, &pb.Request{SentUnixNano: start.UnixNano()}, timeout).Result()
			if err != nil {
				rr, rrDone = append(rr, timeout), true
			} else {
				rr = append(rr, time.Since(start))
			}
		}
		if !termDone {
			d, ok := watchStop(s.system, actor.NewPID(s.addr, victimName(i)), timeout)
			term, termDone = append(term, d), !ok
		}
		time.Sleep(probeGap)
	}
	res := map[string][]time.Duration{"request/response": rr, "stop→Terminated": term}
	if rrDone || termDone {
		return res, errProbeTimeout
	}
	return res, nil
}

// probes is how many control probes a priority run makes at most.
const probes = 50

func victimName(i int) string { return fmt.Sprintf("victim-%d", i) }

// watchStop watches victim from a new local actor, stops it, and returns
// the time from the stop to Terminated, or timeout and false.
func watchStop(system *actor.ActorSystem, victim *actor.PID, timeout time.Duration) (time.Duration, bool) {
	terminated := make(chan struct{})
	watcher := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started:
			ctx.Watch(victim)
		case *actor.Terminated:
			close(terminated)
		}
	}))
	defer system.Root.Stop(watcher)
	time.Sleep(20 * time.Millisecond) // the watch leaves ahead of the stop
	start := time.Now()
	system.Root.Stop(victim)
	select {
	case <-terminated:
		return time.Since(start), true
	case <-time.After(timeout):
		return timeout, false
	}
}

// raw and batched gRPC ------------------------------------------------------

type grpcImpl struct{ batched bool }

func (g grpcImpl) name() string {
	if g.batched {
		return "grpc-batched"
	}
	return "grpc-raw"
}

type rawServer struct {
	pb.UnimplementedRawServer
	slow time.Duration
}

func (r *rawServer) Stream(s pb.Raw_StreamServer) error {
	for {
		_, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		delivered.Add(1)
		if r.slow > 0 {
			time.Sleep(r.slow)
		}
	}
}

func (r *rawServer) Batched(s pb.Raw_BatchedServer) error {
	var p pb.Payload
	for {
		packed, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, m := range packed.Messages {
			if err := proto.Unmarshal(m, &p); err != nil {
				return err
			}
			delivered.Add(1)
		}
	}
}

func (g grpcImpl) serve(slow time.Duration) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	s := grpc.NewServer()
	pb.RegisterRawServer(s, &rawServer{slow: slow})
	desc := echoStream
	desc.Handler = func(_ any, ss grpc.ServerStream) error {
		var m pb.Ack
		for {
			if err := ss.RecvMsg(&m); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
			if err := ss.SendMsg(&m); err != nil {
				return err
			}
		}
	}
	s.RegisterService(&grpc.ServiceDesc{ServiceName: "compare.Echo", HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{desc}}, struct{}{})
	go func() { _ = s.Serve(lis) }()
	return lis.Addr().String(), nil
}

// echoStream answers every message with itself. The probe opens it on the
// flooded stream's connection, as courier's system lane is a second stream
// beside the user lane's.
var echoStream = grpc.StreamDesc{StreamName: "Echo", ClientStreams: true, ServerStreams: true}

// probe times round trips of a small message on a second stream of the
// flooded connection: gRPC's own floor for courier's system round trip.
// The batched variant's receiver is not slow, so it has no probe.
func (g grpcImpl) probe(snd sender, n int, timeout time.Duration) (map[string][]time.Duration, error) {
	if g.batched {
		return nil, nil
	}
	const name = "second-stream round trip"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := snd.(*grpcSender).conn.NewStream(ctx, &echoStream, "/compare.Echo/Echo")
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	answered := make(chan error, 1)
	for range n {
		start := time.Now()
		if err := st.SendMsg(&pb.Ack{Count: start.UnixNano()}); err != nil {
			return nil, err
		}
		go func() { answered <- st.RecvMsg(new(pb.Ack)) }()
		select {
		case err := <-answered:
			if err != nil {
				return nil, err
			}
			lat = append(lat, time.Since(start))
		case <-time.After(timeout):
			lat = append(lat, timeout)
			cancel()
			<-answered
			return map[string][]time.Duration{name: lat}, errProbeTimeout
		}
		time.Sleep(probeGap)
	}
	_ = st.CloseSend()
	return map[string][]time.Duration{name: lat}, nil
}

// grpcSender serializes sends on one stream: gRPC allows one sender per
// stream, so concurrent callers take turns, as they would in an
// application.
type grpcSender struct {
	conn    *grpc.ClientConn
	mu      sync.Mutex
	stream  grpc.ClientStream
	batched bool
	packed  pb.Packed
}

func (g grpcImpl) dial(addr string) (sender, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	c := pb.NewRawClient(conn)
	s := &grpcSender{conn: conn, batched: g.batched}
	if g.batched {
		s.stream, err = c.Batched(context.Background())
	} else {
		s.stream, err = c.Stream(context.Background())
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func (s *grpcSender) send(payload []byte) error {
	msg := &pb.Payload{Data: payload}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.batched {
		return s.stream.SendMsg(msg)
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	s.packed.Messages = append(s.packed.Messages, b)
	if len(s.packed.Messages) < 1000 {
		return nil
	}
	return s.sendPacked()
}

func (s *grpcSender) sendPacked() error {
	err := s.stream.SendMsg(&s.packed)
	s.packed.Messages = s.packed.Messages[:0]
	return err
}

// flush sends a partly filled batch, as an application's linger timer
// would; the driver calls it when the senders stop.
func (s *grpcSender) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.batched || len(s.packed.Messages) == 0 {
		return nil
	}
	return s.sendPacked()
}

func (s *grpcSender) close() {
	_ = s.flush()
	s.mu.Lock()
	_ = s.stream.CloseSend()
	s.mu.Unlock()
	_ = s.stream.RecvMsg(new(pb.Ack)) // returns when the server has read everything
	s.conn.Close()
}

// gRPC's ceiling ------------------------------------------------------------

// grpcCeilingImpl streams ready-made messages of courier's default frame
// size through a codec that passes bytes through: no encoding, no decoding,
// one sender. It is the most gRPC's transport carries on this machine, and
// courier's frames travel the same way.
type grpcCeilingImpl struct{}

func (grpcCeilingImpl) name() string { return "grpc-ceiling" }

// ceilingMessage is the size of one message; the counts are bytes.
const ceilingMessage = manager.DefaultBatchBytes

func (grpcCeilingImpl) unit() int64 { return ceilingMessage }

// bytesCodec hands a *[]byte to the transport as it is, and gives the
// receiver the message's bytes without assembling them.
type bytesCodec struct{}

func (bytesCodec) Name() string { return "compare-bytes" }

func (bytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("bytesCodec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (bytesCodec) Unmarshal(data mem.BufferSlice, v any) error {
	n, ok := v.(*int)
	if !ok {
		return fmt.Errorf("bytesCodec: cannot unmarshal into %T", v)
	}
	*n = data.Len()
	return nil
}

var ceilingStream = grpc.StreamDesc{StreamName: "Stream", ClientStreams: true, ServerStreams: true}

func (grpcCeilingImpl) serve(time.Duration) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	desc := ceilingStream
	desc.Handler = func(_ any, ss grpc.ServerStream) error {
		for {
			var n int
			if err := ss.RecvMsg(&n); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
			delivered.Add(int64(n)) // bytes, for this implementation
		}
	}
	s := grpc.NewServer(grpc.ForceServerCodecV2(bytesCodec{}))
	s.RegisterService(&grpc.ServiceDesc{ServiceName: "compare.Ceiling", HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{desc}}, struct{}{})
	go func() { _ = s.Serve(lis) }()
	return lis.Addr().String(), nil
}

type ceilingSender struct {
	conn   *grpc.ClientConn
	stream grpc.ClientStream
	msg    []byte
}

func (grpcCeilingImpl) dial(addr string) (sender, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(bytesCodec{})))
	if err != nil {
		return nil, err
	}
	st, err := conn.NewStream(context.Background(), &ceilingStream, "/compare.Ceiling/Stream")
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &ceilingSender{conn: conn, stream: st, msg: make([]byte, ceilingMessage)}, nil
}

// send ignores the payload: every call sends one ready-made message.
func (s *ceilingSender) send([]byte) error { return s.stream.SendMsg(&s.msg) }

func (s *ceilingSender) close() {
	_ = s.stream.CloseSend()
	var n int
	_ = s.stream.RecvMsg(&n) // returns when the server has read everything
	s.conn.Close()
}

// raw TCP: the ceiling ------------------------------------------------------

type tcpImpl struct{}

func (tcpImpl) name() string { return "tcp" }

func (tcpImpl) serve(time.Duration) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					delivered.Add(int64(n)) // bytes, for this implementation
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String(), nil
}

// tcpSender writes a 64 KiB buffer per send.
type tcpSender struct {
	c   net.Conn
	buf []byte
}

func (tcpImpl) dial(addr string) (sender, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &tcpSender{c: c, buf: make([]byte, 64<<10)}, nil
}

func (s *tcpSender) send([]byte) error {
	_, err := s.c.Write(s.buf)
	return err
}

func (s *tcpSender) close() { _ = s.c.Close() }

// unit says one send is 64 KiB of counted bytes.
func (tcpImpl) unit() int64 { return 64 << 10 }

// probe measures the machine's floor for the control table: a one-byte
// ping-pong over a second loopback connection, to an echo in this process,
// while the flood runs on the first. No transport can answer faster than
// this on the same machine at the same time.
func (tcpImpl) probe(_ sender, n int, timeout time.Duration) (map[string][]time.Duration, error) {
	c, err := dialEcho()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var lat []time.Duration
	b := make([]byte, 1)
	for range n {
		start := time.Now()
		_ = c.SetDeadline(start.Add(timeout))
		if _, err := c.Write(b); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			lat = append(lat, timeout)
			return map[string][]time.Duration{"1-byte ping-pong": lat}, errProbeTimeout
		}
		lat = append(lat, time.Since(start))
		time.Sleep(probeGap)
	}
	return map[string][]time.Duration{"1-byte ping-pong": lat}, nil
}

// dialEcho returns a loopback connection to an echo in this process. Closing
// it ends the echo and its listener.
func dialEcho() (net.Conn, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		defer lis.Close()
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		lis.Close()
		return nil, err
	}
	return c, nil
}

// protoactorLocalImpl floods an actor in the same actor system, with no
// remote layer: the cost of protoactor-go's local send, the floor under
// any remote one.
type protoactorLocalImpl struct{}

func (protoactorLocalImpl) name() string { return "protoactor-local" }
func (protoactorLocalImpl) inProcess()   {}

func (protoactorLocalImpl) serve(time.Duration) (string, error) {
	return "", fmt.Errorf("protoactor-local runs in one process")
}

func (protoactorLocalImpl) dial(string) (sender, error) {
	system := quietSystem()
	sink := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*pb.Payload); ok {
			delivered.Add(1)
		}
	}))
	return &protoactorSender{system: system, stop: func() {}, sink: sink}, nil
}
