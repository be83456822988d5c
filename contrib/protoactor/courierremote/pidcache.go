package courierremote

import (
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// pidCache keeps the PIDs of recent senders, so that an actor on a peer
// that sends many messages (a pinger, a client awaiting replies) costs one
// PID and one copy of its id, not one per message. It is direct-mapped: a
// slot per hash of the id, replaced by the next sender that hashes there,
// so it holds at most pidSlots PIDs and takes no lock. protoactor-go shares
// PIDs the same way (ctx.Self, ctx.Sender); nothing in it mutates one but
// the process it caches, which is the same for every holder.
type pidCache struct {
	seed  maphash.Seed
	slots [pidSlots]atomic.Pointer[actor.PID]
}

const pidSlots = 1024

func newPIDCache() *pidCache { return &pidCache{seed: maphash.MakeSeed()} }

// get returns a PID for address, id and requestID, which may alias a frame:
// a cached one when the slot holds it, else a new one with copied strings.
func (c *pidCache) get(address, id string, requestID uint32) *actor.PID {
	slot := &c.slots[maphash.String(c.seed, id)%pidSlots]
	if p := slot.Load(); p != nil && p.Id == id && p.Address == address && p.RequestId == requestID {
		return p
	}
	p := &actor.PID{Address: strings.Clone(address), Id: strings.Clone(id), RequestId: requestID}
	slot.Store(p)
	return p
}
