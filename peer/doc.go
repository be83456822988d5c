// Package peer is the stage of courier's pipeline between the lanes'
// writers and readers and the node (package manager): one remote node as
// seen from this one. An Endpoint owns both lanes toward its peer, each a
// ring drained by its writer, and the connection that carries them: it
// dials, runs the handshake, reconnects by a backoff policy, beats and
// watches the peer's liveness, runs the receive loops of its own streams,
// settles with a peer incarnation it is done with, serves a client-only
// peer over the streams that peer opened (Attach), and keeps the
// endpoint's statistics.
//
// The node is handed to an Endpoint as callbacks (Node), as writer.Config
// hands the writer its own: the endpoint knows nothing of the endpoint
// table, the options, the block list or the watches, only how to ask about
// them. Dialing (Dialer, Conn, Stream) and time (Clock) are injected too:
// the node dials with gRPC (GRPCDialer) on the real clock, and this
// package's tests drive fake streams on a test clock.
//
// # Invariants
//
//   - Every envelope Send takes ends as exactly one of: acknowledged by the
//     peer, or dead-lettered once, with a reason (Reason); Send refuses
//     what it does not take with an error. The statistics balance:
//     Enqueued == Acked + dead-lettered after enqueue + Queued.
//   - The system lane never drops: a full system queue is waited on, and a
//     peer that leaves it full for the system queue timeout is terminated.
//   - Each lane has its own connection and stream, so that the system lane
//     never waits behind user bytes in flight.
//   - A connection is up only once both lanes' handshakes are answered
//     within one handshake timeout, and the peer is neither blocked nor
//     quarantined. Reaching a new incarnation of the peer settles with the
//     old one first: what it did not acknowledge is dead-lettered with
//     ReasonPeerRestarted, and the node is told (Node.Settled), before the
//     new one gets anything.
//   - An endpoint gives up within a known time: a refusal other than
//     "unavailable" and a host that does not resolve end it at once, a
//     peer that said goodbye after Reconnect.ShutdownGrace, an unreachable
//     one after Reconnect.MaxAttempts or MaxElapsed. Terminated, it
//     dead-letters what it holds and settles with the peer, once.
//   - Close flushes within its context, then stops every goroutine the
//     endpoint started; an endpoint without a connection ends at once.
//
// # Concurrency
//
// Send is safe from any number of goroutines and, per envelope, takes no
// lock, makes no channel operation and allocates nothing: it pushes into a
// lock-free ring, and the lane's writer goroutine, the ring's only
// consumer and the stream's only sender, does the rest. Each endpoint runs
// one goroutine of its own (Run), which dials and reconnects, and, while
// connected, one receive goroutine per lane. Attach, Terminate, Close,
// Stats and the accessors are safe from any goroutine; Close waits for
// Run, so Run must have been started. The Node's callbacks are called from
// all of these goroutines.
package peer
