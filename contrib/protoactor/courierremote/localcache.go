package courierremote

import (
	"hash/maphash"
	"reflect"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
)

// localCache remembers the actors that inbound user envelopes were
// delivered to, so that a stream of messages to the same actors looks each
// up in the process registry once, not once per message: the registry's
// hashed, locked map took 5–9% of a receiving node's CPU in the comparison's
// 64 B and ping/pong runs.
//
// An entry is used only while its actor is alive. protoactor-go marks an
// ActorProcess dead (an int32 it keeps unexported) when it removes it from
// the registry, and its own PIDs cache their process on the same terms
// (PID.ref). The cache reads that flag where reflection found it when the
// package was loaded; if the field is not there, as in a protoactor-go
// that changed it, the cache stays off and every lookup is the registry's.
//
// It is direct-mapped, like pidCache: a slot per hash of the actor's id,
// replaced by the next actor that hashes there, and emptied when its actor
// is found dead, so it pins at most localSlots processes and takes no lock.
type localCache struct {
	seed  maphash.Seed
	slots [localSlots]atomic.Pointer[localEntry]
}

const localSlots = 1024

type localEntry struct {
	id   string
	proc *actor.ActorProcess
}

// deadFlag is the offset of ActorProcess's dead flag, or noDeadFlag.
var deadFlag = func() uintptr {
	f, ok := reflect.TypeFor[actor.ActorProcess]().FieldByName("dead")
	if !ok || f.Type.Kind() != reflect.Int32 || f.Offset%4 != 0 {
		return noDeadFlag
	}
	return f.Offset
}()

const noDeadFlag = ^uintptr(0)

func newLocalCache() *localCache { return &localCache{seed: maphash.MakeSeed()} }

// alive reports whether the registry still holds p.
func alive(p *actor.ActorProcess) bool {
	return atomic.LoadInt32((*int32)(unsafe.Add(unsafe.Pointer(p), deadFlag))) == 0
}

// get returns the process registered under id, which may alias a frame,
// and whether there is one: the cached actor while it is alive, otherwise
// the registry's answer, cached when it is an actor.
func (c *localCache) get(registry *actor.ProcessRegistryValue, id string) (actor.Process, bool) {
	if deadFlag == noDeadFlag {
		return registry.GetLocal(id)
	}
	slot := &c.slots[maphash.String(c.seed, id)%localSlots]
	e := slot.Load()
	if e != nil && e.id == id {
		if alive(e.proc) {
			return e.proc, true
		}
		slot.CompareAndSwap(e, nil) // let the dead actor go
	}
	ref, ok := registry.GetLocal(id)
	if p, isActor := ref.(*actor.ActorProcess); ok && isActor && alive(p) {
		slot.Store(&localEntry{id: strings.Clone(id), proc: p})
	}
	return ref, ok
}
