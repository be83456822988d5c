package courierremote

import (
	"errors"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/manager"
	"github.com/courier-go/courier/serial"
)

// handler delivers courier's inbound envelopes to the actor system.
type handler struct{ r *Remote }

// Deliver decodes env and posts it to its target. env aliases courier's
// frame: every string kept past this call is cloned.
func (h handler) Deliver(peer manager.Peer, env *manager.Envelope) {
	if env.Lane == batch.LaneSystem {
		h.r.deliverSystem(peer, env)
		return
	}
	h.r.deliverUser(peer, env)
}

func (r *Remote) deliverUser(peer manager.Peer, env *manager.Envelope) {
	sender := r.senderPID(peer, env)
	msg, err := r.decodeUser(env)
	if err != nil {
		r.undeliverable(peer, r.localPID(env.Target, uint32(env.RequestID)), sender, env, err)
		return
	}
	ref, ok := r.locals.get(r.system.ProcessRegistry, env.Target)
	if !ok {
		r.undelivered(r.localPID(env.Target, uint32(env.RequestID)), msg, sender, ReasonNoSuchProcess, ErrNoSuchProcess)
		return
	}
	// An actor's process posts to its mailbox and never looks at the PID
	// (protoactor-go's ActorProcess.SendUserMessage): an actor, the common
	// target, costs no PID. Futures and other processes get theirs.
	var target *actor.PID
	if p, isActor := ref.(*actor.ActorProcess); !isActor {
		target = r.localPID(env.Target, uint32(env.RequestID))
	} else {
		if r.mailboxLimit > 0 && alive(p) {
			r.awaitRoom(peer, p, env.Target)
		}
		// Stopped, or told to stop (protoactor-go marks an actor dead
		// then, and takes it out of the registry once it has stopped):
		// what its mailbox gets now is at best handled while its children
		// stop, and otherwise dropped with the mailbox without a word, so
		// it is a dead letter instead.
		if deadFlag != noDeadFlag && !alive(p) {
			r.undelivered(r.localPID(env.Target, uint32(env.RequestID)), msg, sender, ReasonNoSuchProcess, ErrNoSuchProcess)
			return
		}
	}
	if sender == nil && len(env.Header) == 0 {
		ref.SendUserMessage(target, msg)
		return
	}
	me := &actor.MessageEnvelope{Message: msg, Sender: sender}
	if len(env.Header) > 0 {
		me.Header = make(map[string]string, len(env.Header))
		for _, h := range env.Header {
			me.Header[strings.Clone(h.Key)] = strings.Clone(h.Value)
		}
	}
	ref.SendUserMessage(target, me)
}

// localPID returns a PID of this node for id, which may alias a frame.
func (r *Remote) localPID(id string, requestID uint32) *actor.PID {
	return &actor.PID{Address: r.addr, Id: strings.Clone(id), RequestId: requestID}
}

// senderPID returns the PID env names as its sender, nil if none. A sender
// without an address is on the peer.
func (r *Remote) senderPID(peer manager.Peer, env *manager.Envelope) *actor.PID {
	if env.SenderID == "" {
		return nil
	}
	addr := peer.Address
	if env.SenderAddress != "" {
		addr = env.SenderAddress
	}
	return r.senders.get(addr, env.SenderID, uint32(env.RequestID>>32))
}

// deliverSystem maps courier's system kinds onto protoactor-go's system
// messages.
func (r *Remote) deliverSystem(peer manager.Peer, env *manager.Envelope) {
	switch env.Kind {
	case batch.KindWatch, batch.KindUnwatch:
		target := r.localPID(env.Target, 0)
		watcher := &actor.PID{Address: peer.Address, Id: strings.Clone(env.SenderID)}
		var msg any = &actor.Watch{Watcher: watcher}
		if env.Kind == batch.KindUnwatch {
			msg = &actor.Unwatch{Watcher: watcher}
		}
		// A process that does not exist is the DeadLetter process, which
		// answers a Watch with Terminated (reason not found).
		ref, _ := r.system.ProcessRegistry.GetLocal(env.Target)
		ref.SendSystemMessage(target, msg)
	case batch.KindStop:
		target := r.localPID(env.Target, 0)
		if ref, ok := r.system.ProcessRegistry.GetLocal(env.Target); ok {
			ref.Stop(target)
			return
		}
		r.undelivered(target, &actor.Stop{}, nil, ReasonNoSuchProcess, ErrNoSuchProcess)
	case batch.KindTerminated:
		r.deliverTerminated(peer, env)
	default:
		target := r.localPID(env.Target, 0)
		msg, err := r.decode(env)
		if err != nil {
			r.undeliverable(peer, target, nil, env, err)
			return
		}
		ref, ok := r.system.ProcessRegistry.GetLocal(env.Target)
		if !ok {
			r.undelivered(target, msg, nil, ReasonNoSuchProcess, ErrNoSuchProcess)
			return
		}
		ref.SendSystemMessage(target, msg)
	}
}

// deliverTerminated tells a local watcher that a process it watched on the
// peer terminated: the peer's own Terminated, or the one courier makes
// when the peer's node is gone.
//
// courier delivers a Terminated only after the user envelopes the peer
// sent before it, but an actor's mailbox runs system messages ahead of the
// user messages it holds: posted as a system message, the Terminated would
// overtake the watched process's last messages still in the watcher's
// mailbox. It is posted behind them, as a user message, which the actor
// receives just as it receives a Terminated from its system mailbox (a
// remote process is never a local actor's child, so there is no child
// bookkeeping to do).
func (r *Remote) deliverTerminated(peer manager.Peer, env *manager.Envelope) {
	addr := peer.Address
	if env.SenderAddress != "" {
		addr = strings.Clone(env.SenderAddress)
	}
	t := &actor.Terminated{Who: &actor.PID{Address: addr, Id: strings.Clone(env.SenderID)}, Why: actor.TerminatedReason_Stopped}
	if headerValue(env, manager.ReasonHeader) == manager.AddressTerminated {
		t.Why = actor.TerminatedReason_AddressTerminated
	} else if len(env.Payload) > 0 {
		if m, err := r.decode(env); err == nil {
			if sent, ok := m.(*actor.Terminated); ok {
				t.Why = sent.Why
			}
		}
	}
	watcher := r.localPID(env.Target, 0)
	ref, _ := r.system.ProcessRegistry.GetLocal(env.Target)
	ref.SendUserMessage(watcher, t)
}

func headerValue(env *manager.Envelope, key string) string {
	for _, h := range env.Header {
		if h.Key == key {
			return h.Value
		}
	}
	return ""
}

// Undecodable is the message of the dead letter an envelope becomes when
// the receiving node cannot decode it: what arrived, and why it failed.
type Undecodable struct {
	// TypeName and SerializerID are the envelope's.
	TypeName     string
	SerializerID uint32
	// Payload is a copy of the envelope's payload.
	Payload []byte
	// Err wraps serial.ErrUnknownType, serial.ErrUnknownSerializer or
	// serial.ErrDecode.
	Err error
}

// undeliverable dead-letters an envelope that could not be decoded.
func (r *Remote) undeliverable(peer manager.Peer, target, sender *actor.PID, env *manager.Envelope, err error) {
	reason := ReasonUndecodable
	if errors.Is(err, serial.ErrUnknownType) || errors.Is(err, serial.ErrUnknownSerializer) {
		reason = ReasonUnknownType
	}
	msg := &Undecodable{TypeName: strings.Clone(env.TypeName), SerializerID: env.SerializerID,
		Payload: append([]byte(nil), env.Payload...), Err: err}
	r.system.Logger().Warn("courierremote: undecodable envelope", "peer", peer.Address, "target", target.Id,
		"type", msg.TypeName, "reason", reason, "err", err)
	r.undelivered(target, msg, sender, reason, err)
}

// DeadLetterEvent is published on the actor system's event stream for
// every message the remote could not deliver, just before the system's own
// actor.DeadLetterEvent for it, and says why.
type DeadLetterEvent struct {
	// PID is the process the message was for; Sender its sender, if any.
	PID, Sender *actor.PID
	// Message is the message (an *Undecodable for one that could not be
	// decoded).
	Message any
	// Reason names why: one of courier's dead-letter reasons (queue full,
	// endpoint terminated, blocked, shutdown, too large, peer restarted)
	// or the adapter's (ReasonUnserializable, ReasonUnknownType,
	// ReasonUndecodable, ReasonNoSuchProcess, ReasonRefused).
	Reason string
	// Err is the error behind the reason, when there is one.
	Err error
}

// undelivered reports msg as a dead letter: the adapter's event with the
// reason, then the actor system's DeadLetter process, which publishes
// actor.DeadLetterEvent and answers a waiting sender (a future fails at
// once with actor.ErrDeadLetter instead of timing out).
func (r *Remote) undelivered(pid *actor.PID, msg any, sender *actor.PID, reason string, err error) {
	r.system.EventStream.Publish(&DeadLetterEvent{PID: pid, Sender: sender, Message: msg, Reason: reason, Err: err})
	if _, system := msg.(actor.SystemMessage); system {
		r.system.DeadLetter.SendSystemMessage(pid, msg)
		return
	}
	var m any = msg
	if sender != nil {
		m = &actor.MessageEnvelope{Message: msg, Sender: sender}
	}
	r.system.DeadLetter.SendUserMessage(pid, m)
}

// courierDeadLetter receives the envelopes courier dead-letters: queue
// full, endpoint terminated, blocked, shutdown and the others.
func (r *Remote) courierDeadLetter(dl manager.DeadLetter) {
	env := &dl.Envelope
	pid := &actor.PID{Address: dl.Address, Id: env.Target, RequestId: uint32(env.RequestID)}
	var sender *actor.PID
	if env.SenderID != "" {
		addr := env.SenderAddress
		if addr == "" {
			addr = r.addr
		}
		sender = &actor.PID{Address: addr, Id: env.SenderID, RequestId: uint32(env.RequestID >> 32)}
	}
	var msg any
	switch env.Kind {
	case batch.KindWatch:
		msg = &actor.Watch{Watcher: sender}
	case batch.KindUnwatch:
		msg = &actor.Unwatch{Watcher: sender}
	case batch.KindStop:
		msg = &actor.Stop{}
	default:
		if m, err := r.decode(env); err == nil {
			msg = m
		} else {
			msg = &Undecodable{TypeName: env.TypeName, SerializerID: env.SerializerID, Payload: env.Payload, Err: err}
		}
	}
	if env.Kind == batch.KindWatch || env.Kind == batch.KindUnwatch {
		// courier tells the watcher Terminated itself; the system's dead
		// letters must not answer the Watch a second time.
		r.system.EventStream.Publish(&DeadLetterEvent{PID: pid, Message: msg, Reason: dl.Reason.String()})
		return
	}
	if env.Kind == batch.KindTerminated {
		sender = nil
	}
	r.undelivered(pid, msg, sender, dl.Reason.String(), nil)
}
