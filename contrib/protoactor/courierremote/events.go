package courierremote

import (
	"errors"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/courier-go/courier/manager"
)

// EndpointEvent is published on the actor system's event stream for every
// event of courier's (connected, reconnecting, reconnected, terminated,
// throttled, peer refused, stream error, peer restarted). Connected and
// terminated endpoints are also published as protoactor-go's own
// remote.EndpointConnectedEvent and remote.EndpointTerminatedEvent, and
// throttling as EndpointThrottledEvent, just after it.
type EndpointEvent struct {
	manager.Event
}

// EndpointThrottledEvent says that the user queue toward Address crossed a
// watermark: Level 1 when it reached the high one, 0 when it fell back
// under the low one.
type EndpointThrottledEvent struct {
	Address            string
	Level              int
	QueueLen, QueueCap int
}

// publish puts courier's event e on the actor system's event stream. It
// runs on courier's event goroutine, one event at a time, in order.
func (r *Remote) publish(e manager.Event) {
	switch e.Type {
	case manager.EventTerminated:
		if e.Reason == manager.ReasonBlocked.String() {
			r.blockedEPs.Store(e.Address, struct{}{})
		} else {
			r.blockedEPs.Delete(e.Address)
		}
	case manager.EventConnected, manager.EventReconnected:
		r.blockedEPs.Delete(e.Address)
	}
	es := r.system.EventStream
	es.Publish(&EndpointEvent{e})
	switch e.Type {
	case manager.EventConnected, manager.EventReconnected:
		es.Publish(&remote.EndpointConnectedEvent{Address: e.Address})
	case manager.EventTerminated:
		es.Publish(&remote.EndpointTerminatedEvent{Address: e.Address})
	case manager.EventThrottled:
		es.Publish(&EndpointThrottledEvent{Address: e.Address, Level: e.Level, QueueLen: e.QueueLen, QueueCap: e.QueueCap})
	}
}

// sendReason names the reason of a send to pid that failed with err. courier
// refuses sends to a terminated endpoint until it replaces it, whatever
// ended it; one ended because its system is blocked (its EventTerminated
// said so) gives the reason blocked, not endpoint terminated.
func (r *Remote) sendReason(pid *actor.PID, err error) string {
	if errors.Is(err, manager.ErrEndpointTerminated) {
		if _, ok := r.blockedEPs.Load(pid.Address); ok {
			return manager.ReasonBlocked.String()
		}
	}
	return reasonOf(err)
}
