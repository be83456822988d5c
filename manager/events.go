package manager

import (
	"sync"
	"sync/atomic"
	"time"
)

// EventType says what happened to an endpoint.
type EventType uint8

// Event types.
const (
	// EventConnected: the endpoint's streams are established and the
	// handshake accepted.
	EventConnected EventType = iota + 1
	// EventThrottled: the user queue crossed a watermark; Level says which
	// way (1: reached the high watermark, 0: back under the low one).
	EventThrottled
	// EventReconnecting: the connection failed; attempt Attempt starts
	// after Delay.
	EventReconnecting
	// EventReconnected: the connection is back after a failure.
	EventReconnected
	// EventTerminated: the endpoint gave up for good; Reason says why.
	// What it held was dead-lettered.
	EventTerminated
	// EventPeerRefused: a handshake was refused, by the peer (on the
	// dialing node) or by this node (on the listening node); Err says why.
	EventPeerRefused
	// EventStreamError: an inbound stream failed: bad frames, a protocol
	// violation, a panicking handler. Err says what.
	EventStreamError
	// EventPeerRestarted: the endpoint reconnected to a new incarnation of
	// its peer (Peer). Before any traffic to it, what the old incarnation
	// had not acknowledged was dead-lettered (Count envelopes, reason
	// "peer restarted"), the old incarnation was quarantined and its
	// watchers were told Terminated.
	EventPeerRestarted
)

// String returns the event type's name.
func (t EventType) String() string {
	switch t {
	case EventConnected:
		return "connected"
	case EventThrottled:
		return "throttled"
	case EventReconnecting:
		return "reconnecting"
	case EventReconnected:
		return "reconnected"
	case EventTerminated:
		return "terminated"
	case EventPeerRefused:
		return "peer refused"
	case EventStreamError:
		return "stream error"
	case EventPeerRestarted:
		return "peer restarted"
	}
	return "event"
}

// Event is one thing that happened to an endpoint or a stream.
type Event struct {
	Type EventType
	Time time.Time
	// Address is the endpoint's address (for inbound streams, the peer's).
	Address string
	// Peer is the peer, when known.
	Peer Peer
	// Level is the throttle level for EventThrottled: 1 throttled, 0 clear.
	Level int
	// QueueLen and QueueCap describe the user queue for EventThrottled.
	QueueLen, QueueCap int
	// Attempt and Delay describe the next attempt for EventReconnecting.
	Attempt int
	Delay   time.Duration
	// Reason says why, for EventTerminated.
	Reason string
	// Count is the number of envelopes dead-lettered, for
	// EventPeerRestarted.
	Count int
	// Err is the error behind EventReconnecting, EventTerminated,
	// EventPeerRefused and EventStreamError.
	Err error
}

// eventQueue is how many events may wait for subscribers before new ones
// are dropped (and counted in Manager.DroppedEvents).
const eventQueue = 1024

// events fans events out to subscribers from one goroutine, so that the
// goroutines that emit them never wait for a subscriber.
type events struct {
	ch      chan Event
	stop    chan struct{}
	mu      sync.Mutex
	subs    map[int]func(Event)
	nextID  int
	dropped atomic.Uint64
	done    chan struct{}
}

func newEvents() *events {
	e := &events{ch: make(chan Event, eventQueue), subs: map[int]func(Event){}, stop: make(chan struct{}), done: make(chan struct{})}
	go e.run()
	return e
}

func (e *events) emit(ev Event) {
	ev.Time = time.Now()
	select {
	case e.ch <- ev:
	default:
		e.dropped.Add(1)
	}
}

func (e *events) run() {
	defer close(e.done)
	for {
		select {
		case ev := <-e.ch:
			e.deliver(ev)
		case <-e.stop:
			for {
				select {
				case ev := <-e.ch:
					e.deliver(ev)
				default:
					return
				}
			}
		}
	}
}

func (e *events) deliver(ev Event) {
	{
		e.mu.Lock()
		subs := make([]func(Event), 0, len(e.subs))
		for id := 0; id < e.nextID; id++ {
			if f, ok := e.subs[id]; ok {
				subs = append(subs, f)
			}
		}
		e.mu.Unlock()
		for _, f := range subs {
			f(ev)
		}
	}
}

func (e *events) subscribe(f func(Event)) func() {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := e.nextID
	e.nextID++
	e.subs[id] = f
	return func() {
		e.mu.Lock()
		delete(e.subs, id)
		e.mu.Unlock()
	}
}

// close delivers the events already emitted, then stops. Later events are
// queued and never delivered.
func (e *events) close() {
	close(e.stop)
	<-e.done
}
