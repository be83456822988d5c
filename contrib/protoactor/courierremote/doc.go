// Package courierremote makes courier the remote layer of a protoactor-go
// actor system: PIDs on other nodes resolve to courier endpoints, messages
// travel as courier envelopes, Watch, Unwatch, Stop and Terminated travel on
// courier's system lane, and remote spawn, process listing and diagnostics
// are courier's unary calls answered from the actor system's registries.
//
// Switching from protoactor-go's remote changes the line that starts it:
//
//	// before: r := remote.NewRemote(system, remote.Configure("127.0.0.1", 8080)); r.Start()
//	r, err := courierremote.Start(ctx, system, courierremote.Configure("127.0.0.1", 8080))
//	...
//	defer r.Shutdown(ctx)
//
// Actors, messages, PIDs, futures (Request, RequestFuture, Respond) and
// watches are unchanged. courier's own options (manager.Option) pass
// through Start unchanged.
//
// # Stage and invariants
//
// The package sits above courier's manager and uses only its public API.
// On the sending side, the address resolver it registers on the actor
// system answers every PID whose address is not the system's own with one
// shared process value; that process encodes the message with the
// Registry of the package serial and queues it with manager.Send. PIDs on
// the system's own address never reach the resolver, so local sends never
// touch the transport. On the receiving side, courier's Handler decodes each
// envelope and posts it to the local process named by its target. While
// an actor's mailbox holds Config.MailboxLimit user messages, the delivery
// waits for it to drain, and with it that peer's user lane, so that a
// flood into a slow actor is held back by courier's flow control instead
// of growing the receiving node's heap. The wait ends early when the actor
// dies, the Remote stops, or courier wants the lane back
// (manager.Manager.LaneWanted: the peer blocked, restarted or lost), so
// that blocking a peer and telling watchers it is gone never wait for a
// slow actor. A message for an actor that has been told to stop is a dead
// letter (no such process), not a message dropped with its mailbox.
//
// Every message that cannot be delivered ends as a dead letter of the actor
// system (an actor.DeadLetterEvent, through the system's DeadLetter process,
// which also fails a waiting future at once), preceded on the event stream
// by a DeadLetterEvent of this package that carries the reason: courier's
// (queue full, endpoint terminated, blocked, shutdown, ...) or the
// adapter's (unknown type, undecodable payload, no such process,
// unserializable message). Nothing is dropped without one.
//
// # Concurrency
//
// A Remote is safe for concurrent use. Sends run on the sending actors'
// goroutines; deliveries run on courier's reader goroutines, one per lane
// per peer, so messages of one lane from one node arrive in order.
// Courier's events (EndpointEvent, EndpointThrottledEvent and protoactor-go's
// endpoint events) are published from one goroutine, in order. What a
// delivery publishes (MailboxFullEvent, and the DeadLetterEvent of an
// inbound message) is published on the reader goroutine of its lane,
// which holds the lane meanwhile: a subscriber to those must not call
// Block or Shutdown before it returns, since both wait for the lane.
package courierremote
