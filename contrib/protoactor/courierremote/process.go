package courierremote

import (
	"context"
	"errors"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/manager"
	"github.com/courier-go/courier/serial"
)

// process is the actor.Process of every PID on another node: one value
// shared by all of them, so that resolving a PID allocates nothing.
type process struct{ r *Remote }

var _ actor.Process = (*process)(nil)

// SendUserMessage sends a user message to pid over the user lane.
func (p *process) SendUserMessage(pid *actor.PID, message any) {
	header, msg, sender := actor.UnwrapEnvelope(message)
	if err := p.r.sendUser(pid, header, msg, sender); err != nil {
		p.r.undelivered(pid, msg, sender, p.r.sendReason(pid, err), err)
	}
}

// SendSystemMessage sends Watch, Unwatch, Stop and Terminated as courier's
// own system kinds, and any other system message as a serialized system
// envelope; all of them on the system lane, which overtakes user traffic.
func (p *process) SendSystemMessage(pid *actor.PID, message any) {
	if err := p.r.sendSystem(pid, message); err != nil {
		p.r.undelivered(pid, message, nil, p.r.sendReason(pid, err), err)
	}
}

// Stop asks the remote process to stop.
func (p *process) Stop(pid *actor.PID) { p.SendSystemMessage(pid, &actor.Stop{}) }

// Send sends message to pid as the actor system would, and returns the
// error that an actor's Send can only report as a dead letter: an
// unserializable message, an invalid or too large envelope, a stopped
// remote or a terminated endpoint. A message to a local PID is sent
// locally.
func (r *Remote) Send(pid *actor.PID, message any) error {
	if pid == nil {
		return ErrNoSuchProcess
	}
	if pid.Address == r.addr || pid.Address == "nonhost" {
		r.system.Root.Send(pid, message)
		return nil
	}
	header, msg, sender := actor.UnwrapEnvelope(message)
	return r.sendUser(pid, header, msg, sender)
}

// sendUser encodes msg and queues it for pid.
func (r *Remote) sendUser(pid *actor.PID, header actor.ReadonlyMessageHeader, msg any, sender *actor.PID) error {
	if r.stopped.Load() {
		return ErrStopped
	}
	env := batch.Envelope{Target: pid.Id, RequestID: uint64(pid.RequestId)}
	r.setSender(&env, sender)
	if header != nil && header.Length() > 0 {
		keys := header.Keys()
		env.Header = make([]batch.Header, len(keys))
		for i, k := range keys {
			env.Header[i] = batch.Header{Key: k, Value: header.Get(k)}
		}
	}
	if err := r.encodeArena(&env, msg); err != nil {
		return err
	}
	return r.m.Send(context.Background(), pid.Address, &env)
}

// encodeArena serializes a user message into env's payload, carved from
// an arena.
func (r *Remote) encodeArena(env *batch.Envelope, msg any) error {
	a := arenas.Get().(*arena)
	defer arenas.Put(a)
	out, name, err := r.ser.Append(a.tail(), msg, r.serID)
	if err != nil {
		return r.encodeControl(env, msg, err)
	}
	// Bytes written into the chunk are carved whatever their size: the
	// next payload must not overwrite them.
	a.carve(out)
	env.TypeName, env.SerializerID, env.Payload = name, r.serID, out[:len(out):len(out)]
	return nil
}

// setSender names sender in env. A sender on this node travels without
// its address: the receiver knows the peer's.
func (r *Remote) setSender(env *batch.Envelope, sender *actor.PID) {
	if sender == nil {
		return
	}
	env.SenderID = sender.Id
	env.RequestID |= uint64(sender.RequestId) << 32
	if sender.Address != r.addr && sender.Address != "nonhost" {
		env.SenderAddress = sender.Address
	}
}

func (r *Remote) sendSystem(pid *actor.PID, message any) error {
	if r.stopped.Load() {
		return ErrStopped
	}
	ctx := context.Background()
	switch msg := message.(type) {
	case *actor.Watch:
		return r.m.Watch(ctx, pid.Address, msg.Watcher.GetId(), pid.Id)
	case *actor.Unwatch:
		return r.m.Unwatch(ctx, pid.Address, msg.Watcher.GetId(), pid.Id)
	case *actor.Stop:
		return r.m.Send(ctx, pid.Address, &batch.Envelope{Target: pid.Id, Lane: batch.LaneSystem, Kind: batch.KindStop})
	case *actor.Terminated:
		// The watched process is this node's: it names itself, and the
		// reason travels as the encoded Terminated.
		env := batch.Envelope{Target: pid.Id, SenderID: msg.Who.GetId(), Lane: batch.LaneSystem, Kind: batch.KindTerminated}
		if err := r.encodeWith(&env, msg, serial.ProtobufID); err != nil {
			return err
		}
		return r.m.Send(ctx, pid.Address, &env)
	}
	env := batch.Envelope{Target: pid.Id, Lane: batch.LaneSystem}
	if err := r.encodeWith(&env, message, r.serID); err != nil {
		return err
	}
	return r.m.Send(ctx, pid.Address, &env)
}

// Reasons the adapter gives the dead letters it makes itself; courier's
// own (manager.Reason*) name the others.
const (
	// ReasonUnserializable: the sending node could not encode the
	// message (no serializer takes it, or its type is not registered).
	ReasonUnserializable = "unserializable message"
	// ReasonUnknownType: the receiving node knows no type of the
	// envelope's type name, or no serializer of its id.
	ReasonUnknownType = "unknown type"
	// ReasonUndecodable: the receiving node's serializer failed on the
	// payload.
	ReasonUndecodable = "undecodable payload"
	// ReasonNoSuchProcess: the receiving node has no process of the
	// target's id.
	ReasonNoSuchProcess = "no such process"
	// ReasonRefused: courier refused the envelope at Send (too large,
	// invalid, the endpoint terminated, the node closed).
	ReasonRefused = "refused at send"
)

// reasonOf names the reason of a send that failed with err.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, serial.ErrUnsupported), errors.Is(err, serial.ErrUnknownType),
		errors.Is(err, serial.ErrUnknownSerializer), errors.Is(err, serial.ErrEncode):
		return ReasonUnserializable
	case errors.Is(err, ErrStopped), errors.Is(err, manager.ErrClosed):
		return manager.ReasonShutdown.String()
	case errors.Is(err, manager.ErrEndpointTerminated):
		return manager.ReasonEndpointTerminated.String()
	case errors.Is(err, manager.ErrTooLarge):
		return manager.ReasonTooLarge.String()
	case errors.Is(err, manager.ErrQueueFull):
		return manager.ReasonQueueFull.String()
	}
	return ReasonRefused
}
