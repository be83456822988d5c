package courierremote

import (
	"reflect"
	"time"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/manager"
)

// DefaultMailboxLimit is the number of user messages an actor's mailbox
// may hold before the adapter stops delivering to it from a peer (see
// Config.MailboxLimit): about 16 MiB of 1 KiB messages.
const DefaultMailboxLimit = 16384

// A protoactor-go mailbox is unbounded by default, so a remote layer that
// posts to it as fast as the peer sends lets a slow actor's mailbox, and
// its node's heap, grow without end: in the comparison's flood into an
// actor that takes 200 µs a message, the receiving process grew by about
// 200 MiB a second. courier bounds what is in flight with its queues and
// flow-control windows, but they only hold back a sender while the
// receiver has not taken the envelopes, and posting to a mailbox takes
// them at once. So the adapter looks at the mailbox: while the target
// actor's holds MailboxLimit user messages or more, the delivery waits,
// which stops courier's reader for that peer's user lane, which fills the
// stream window, which stops the peer's writer and fills its queue, where
// the peer's overflow policy applies (a blocked or a dead-lettered send).
// The system lane has its own reader and stream: watch, stop and
// terminate still pass.
//
// ActorProcess keeps its mailbox unexported; the adapter reads it where
// reflection found it when the package was loaded, as localCache reads the
// dead flag. In a protoactor-go without that field, there is no limit.

// mailboxField is the offset of ActorProcess's mailbox, or noField.
var mailboxField = func() uintptr {
	f, ok := reflect.TypeFor[actor.ActorProcess]().FieldByName("mailbox")
	if !ok || f.Type != reflect.TypeFor[actor.Mailbox]() {
		return noField
	}
	return f.Offset
}()

const noField = ^uintptr(0)

// mailboxOf returns p's mailbox. ActorProcess sets it when it is made and
// never changes it.
func mailboxOf(p *actor.ActorProcess) actor.Mailbox {
	return *(*actor.Mailbox)(unsafe.Add(unsafe.Pointer(p), mailboxField))
}

// MailboxFullEvent is published on the actor system's event stream when
// deliveries from a peer start waiting for an actor's mailbox to drain
// (Waiting true) and when they resume (Waiting false).
type MailboxFullEvent struct {
	// Address is the peer whose user lane waits.
	Address string
	// PID is the actor whose mailbox is full.
	PID *actor.PID
	// Waiting is true when the wait begins, false when it ends.
	Waiting bool
	// Messages is the number of user messages in the mailbox then.
	Messages int
}

// Waits start at minWait and double up to maxWait: a mailbox that holds
// thousands of messages takes far longer than that to drain a quarter.
const (
	minWait = 20 * time.Microsecond
	maxWait = time.Millisecond
)

// awaitRoom returns when p's mailbox holds fewer than the limit's user
// messages: at once in the common case, otherwise once the actor has taken
// a quarter of the limit, or has died, or the remote is stopping, or
// courier wants the lane back (the peer blocked, restarted or lost, or a
// new stream of it), since courier cannot close the lane or tell watchers
// that the peer is gone while a delivery waits. Then the rest of the batch
// is delivered without waiting: a mailbox may go past the limit by at most
// a frame's envelopes. It runs on courier's reader of peer's user lane,
// which it holds back meanwhile.
func (r *Remote) awaitRoom(peer manager.Peer, p *actor.ActorProcess, id string) {
	mb := mailboxOf(p)
	n := mb.UserMessageCount()
	if n < r.mailboxLimit || r.letGo(peer) {
		return
	}
	pid := r.localPID(id, 0)
	r.mailboxWaits.Add(1)
	es := r.system.EventStream
	es.Publish(&MailboxFullEvent{Address: peer.Address, PID: pid, Waiting: true, Messages: n})
	resume := r.mailboxLimit - r.mailboxLimit/4
	for wait := minWait; n >= resume && alive(p) && !r.letGo(peer); wait = min(2*wait, maxWait) {
		time.Sleep(wait)
		n = mb.UserMessageCount()
	}
	es.Publish(&MailboxFullEvent{Address: peer.Address, PID: pid, Waiting: false, Messages: n})
}

// letGo reports whether a delivery from peer must not wait any longer.
func (r *Remote) letGo(peer manager.Peer) bool {
	return r.stopped.Load() || r.m.LaneWanted(peer, batch.LaneUser)
}

// MailboxWaits returns how many times deliveries from a peer waited for a
// full mailbox (Config.MailboxLimit).
func (r *Remote) MailboxWaits() uint64 { return r.mailboxWaits.Load() }
