// Package manager is courier's public façade: a Manager is one node. It
// listens for peers, keeps an endpoint per peer it sends to, delivers
// inbound envelopes to its Handler, and reports events, statistics and dead
// letters.
//
// # Stage
//
// manager is the last stage of the pipeline, above package peer. It owns
// what concerns the node as a whole: the options and their validation, the
// listener and the inbound streams' handshake decisions (reader serves
// them), the endpoint table, events, dead letters and the statistics'
// aggregation, the block list, quarantine, watches and their Terminated
// envelopes, and the diagnostics and spawn calls. Everything about one
// remote node (its lanes, rings and writers, dialing, handshake, reconnect
// and backoff, heartbeats, settling, client-only serving, its counters) is
// a peer.Endpoint's, to which the Manager hands itself as callbacks. The
// dead-letter reasons and the errors decided there are re-exported here
// (DeadLetterReason, ErrQueueFull, ErrEndpointTerminated, ...), so that a
// user imports this package alone.
//
// # Sending
//
// Send looks the endpoint up without a global lock, creating it (and
// dialing lazily) on first use, and pushes the envelope into the endpoint's
// user or system queue: lock-free rings of fixed capacity. Each lane has its
// own writer goroutine and its own gRPC stream, on a TCP connection of its
// own, so system envelopes (watch, unwatch, terminated, stop) overtake a
// user lane that is throttled or stalled by a slow receiver, and never wait
// behind the user bytes in flight on a busy link. A queue's capacity is
// fixed, its memory is not: its slots are allocated by its first envelope,
// and a lane idle for WithIdleRelease gives them back until the next.
//
// # Guarantees
//
//   - Per sending node, receiving node and lane: FIFO.
//   - Every user envelope ends as exactly one of: delivered, dead-lettered
//     with a reason (queue full, too large, endpoint terminated, blocked,
//     shutdown, peer restarted, peer shut down, quarantined, unresolvable
//     host), or refused at Send with an error. The statistics prove it:
//     Enqueued == Acked + dead-lettered after enqueue + Queued.
//   - System envelopes are never dropped for backpressure; a peer that
//     leaves the system queue full for the system queue timeout is treated
//     as failed.
//   - A delivery whose acknowledgement is lost with the connection can be
//     dead-lettered at shutdown or termination although the peer got it;
//     across a reconnect it is resent and delivered once.
//   - Close flushes within its context, then stops every goroutine it
//     started; an endpoint without a connection ends at once.
//   - An endpoint gives up on its peer within a known time: a peer that
//     shut down cleanly after PeerShutdownGrace, an unreachable one after
//     Backoff.MaxElapsed (plus the attempt then under way), a refusal other
//     than "unavailable" and a host that does not resolve at once. Its
//     queue is dead-lettered and the watchers of the peer's processes are
//     told Terminated.
//
// # Concurrency
//
// A Manager is safe for concurrent use: Send, Watch and the statistics may
// be called from any number of goroutines, and Send takes no global lock
// (the endpoint table is read without one; an endpoint is created once per
// address). Each endpoint runs one goroutine that dials and reconnects, and
// one writer goroutine per lane that alone sends on that lane's stream.
// Each inbound stream has one receive goroutine, which calls the Handler:
// so Deliver runs on many goroutines at once, one per lane per peer, each
// in order. Events go to subscribers from one goroutine, in order. Close
// may be called from any goroutine, more than once.
//
// # Client-only nodes
//
// A node without WithListenAddress dials the nodes it sends to and is
// reached back over the streams it opened. The listening side addresses
// it as ClientAddressPrefix + system id + ":" + incarnation in hex, the
// Peer.Address its handler sees: a reply is a Send to that address. The
// endpoint for it ends once the client has had no stream for the idle
// timeout (WithIdleTimeout).
//
// # Diagnostics and remote spawn
//
// ListProcesses, ProcessDiagnostics, Spawn and SpawnNamed call unary
// methods of a peer's Transport service, answered by the peer's embedder
// through the ProcessRegistry and Spawner it set (WithProcessRegistry,
// WithSpawner); without them the peer answers ErrNotSupported. The calls
// pass the peer's block list and authoriser, like a stream's handshake, and
// the embedder's errors come back as the package's sentinels. An embedder
// that panics or ignores its context never takes the node down or holds a
// call past its deadline. The calls to one peer share a connection, apart
// from the streams', cached per address (at most 64, each closed after a
// minute without a call, when it fails, and by Close).
//
// # Limits
//
// A listening node bounds what a peer can hold: connections
// (WithMaxInboundConnections), streams per system id and per connection
// (WithMaxStreamsPerPeer), time to the Hello (WithHandshakeTimeout), time
// with nothing received (WithIdleTimeout), and frame and dictionary sizes
// (WithMaxFrameBytes, WithDictionaryLimits). A peer beyond one loses the
// stream or connection with a typed error, reported as an event.
package manager
