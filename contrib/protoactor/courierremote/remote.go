package courierremote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/extensions"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/courier-go/courier/manager"
	"github.com/courier-go/courier/serial"
)

// Errors of the adapter. Compare with errors.Is; courier's and
// protoactor-go's own sentinels (manager.ErrUnknownKind,
// remote.ErrProcessNameAlreadyExist, ...) match the errors that carry them
// as well.
var (
	// ErrInvalidConfig: Start was given a configuration out of range; the
	// error lists every problem.
	ErrInvalidConfig = errors.New("courierremote: invalid configuration")
	// ErrAlreadyStarted: the actor system already has a courier remote.
	ErrAlreadyStarted = errors.New("courierremote: actor system already has a remote")
	// ErrStopped: the remote has been shut down.
	ErrStopped = errors.New("courierremote: remote stopped")
	// ErrNoSuchProcess: an envelope named a process the receiving node does
	// not have.
	ErrNoSuchProcess = errors.New("courierremote: no such process")
)

// ConfigOption changes a Config.
type ConfigOption func(*Config)

// Config is what Start needs beyond courier's own options: where to listen
// and what the node can spawn and (de)serialize. Configure builds one.
type Config struct {
	// Host and Port are where the node listens; port 0 picks a free port.
	Host string
	Port int
	// AdvertisedHost, when set, is the address (host:port) peers are told
	// to reach the node at, and the address of every local PID. Default:
	// the listener's address.
	AdvertisedHost string
	// Kinds are the props peers may spawn by kind name (see Remote.Register).
	Kinds map[string]*actor.Props
	// Serializers encodes and decodes messages. Default: serial.New(), with
	// protobuf (id 0) and JSON (id 1) over every linked protobuf type.
	Serializers *serial.Registry
	// SerializerID is the serializer outgoing messages use. Default 0,
	// protobuf.
	SerializerID uint32
	// MailboxLimit is the number of user messages an actor's mailbox may
	// hold before deliveries to it from a peer wait for it to drain, which
	// holds back that peer's user lane (all of its user messages to this
	// node, to any actor) until the actor has taken a quarter of the limit;
	// the peer's sends then meet its queue's overflow policy. 0 means
	// DefaultMailboxLimit; a negative limit turns the wait off, and a slow
	// actor's mailbox grows without bound, as with protoactor-go's remote.
	MailboxLimit int
}

// Configure returns the configuration for a node listening on host:port,
// as protoactor-go's remote.Configure does.
func Configure(host string, port int, opts ...ConfigOption) *Config {
	c := &Config{Host: host, Port: port, Kinds: map[string]*actor.Props{}}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	return c
}

// WithAdvertisedHost sets Config.AdvertisedHost.
func WithAdvertisedHost(address string) ConfigOption {
	return func(c *Config) { c.AdvertisedHost = address }
}

// WithKinds adds kinds peers may spawn, as protoactor-go's remote.WithKinds.
func WithKinds(kinds ...*remote.Kind) ConfigOption {
	return func(c *Config) {
		for _, k := range kinds {
			if k != nil {
				c.Kinds[k.Kind] = k.Props
			}
		}
	}
}

// WithSerializers sets the serializer registry (Config.Serializers).
func WithSerializers(r *serial.Registry) ConfigOption {
	return func(c *Config) { c.Serializers = r }
}

// WithSerializerID sets the serializer outgoing messages use
// (Config.SerializerID): serial.ProtobufID (the default) or serial.JSONID,
// or the id of one the registry was given.
func WithSerializerID(id uint32) ConfigOption {
	return func(c *Config) { c.SerializerID = id }
}

// WithMailboxLimit sets Config.MailboxLimit.
func WithMailboxLimit(n int) ConfigOption {
	return func(c *Config) { c.MailboxLimit = n }
}

var extensionID = extensions.NextExtensionID()

// Remote is courier serving as an actor system's remote layer. Start
// creates it; it is safe for concurrent use.
type Remote struct {
	system *actor.ActorSystem
	m      *manager.Manager
	ser    *serial.Registry
	serID  uint32
	// ctl encodes and decodes the actor system's own messages that the
	// adapter's protocol needs when ser does not know them (see encode).
	ctl *serial.Registry
	// addr is the node's address: the system's, and its PIDs'.
	addr string
	proc *process
	// senders caches the PIDs of inbound envelopes' senders.
	senders *pidCache
	// locals caches the actors inbound user envelopes go to.
	locals *localCache

	kinds   sync.Map // kind name → *actor.Props
	spawned sync.Map // process id → kind name, of processes spawned for peers
	// blockedEPs holds the addresses whose endpoint courier terminated
	// because their system is blocked, until one connects again.
	blockedEPs sync.Map // address → struct{}

	// mailboxLimit is Config.MailboxLimit's, 0 when deliveries never wait.
	mailboxLimit int
	mailboxWaits atomic.Uint64

	stopped     atomic.Bool
	unsubscribe func()
	closeOnce   sync.Once
	closeErr    error
}

// DefaultUserQueue is the user queue capacity per peer the adapter gives
// courier (manager.WithUserQueue) unless opts say otherwise: four times
// courier's own default. Actors keep many requests in flight, and a queue
// holds what was sent until the peer acknowledges it, so a larger queue
// keeps more in flight while acks are on their way (ping/pong, 16 pairs of
// 1000 in flight: about 8% more messages a second than at 4096). A full
// queue of small messages takes about 2 MiB; protoactor-go's own remote
// queues up to a million messages per peer.
const DefaultUserQueue = 16384

// Start starts courier as system's remote: it listens on cfg's host and
// port, sets the system's address to the node's, and resolves every PID on
// another address through courier. opts are courier's own options, passed
// to manager.New unchanged after the adapter's (listen address, system id,
// handler, dead-letter handler, spawner and process registry, and the
// DefaultUserQueue, which opts may change), so they can tune queues,
// batches, TLS, reconnects and limits. ctx bounds the start only.
func Start(ctx context.Context, system *actor.ActorSystem, cfg *Config, opts ...manager.Option) (*Remote, error) {
	if err := validate(system, cfg); err != nil {
		return nil, err
	}
	if system.Extensions.Get(extensionID) != nil {
		return nil, ErrAlreadyStarted
	}
	r := &Remote{system: system, ser: cfg.Serializers, serID: cfg.SerializerID, mailboxLimit: cfg.MailboxLimit}
	if r.mailboxLimit == 0 {
		r.mailboxLimit = DefaultMailboxLimit
	}
	if r.mailboxLimit < 0 || mailboxField == noField || deadFlag == noDeadFlag {
		r.mailboxLimit = 0 // no waits
	}
	if r.ser == nil {
		var err error
		if r.ser, err = serial.New(); err != nil {
			return nil, err
		}
	}
	if _, ok := r.ser.Serializer(r.serID); !ok {
		return nil, fmt.Errorf("%w: serializer %d is not in the registry", ErrInvalidConfig, r.serID)
	}
	var err error
	if r.ctl, err = controlRegistry(); err != nil {
		return nil, err
	}
	for k, p := range cfg.Kinds {
		r.kinds.Store(k, p)
	}
	r.proc = &process{r: r}
	r.senders = newPIDCache()
	r.locals = newLocalCache()
	all := []manager.Option{
		manager.WithListenAddress(net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))),
		manager.WithSystemID(system.ID),
		manager.WithHandler(handler{r}),
		manager.WithDeadLetterHandler(r.courierDeadLetter),
		manager.WithSpawner(spawner{r}),
		manager.WithProcessRegistry(registry{r}),
		manager.WithUserQueue(DefaultUserQueue),
	}
	if cfg.AdvertisedHost != "" {
		all = append(all, manager.WithAdvertiseAddress(cfg.AdvertisedHost))
	}
	m, err := manager.New(append(all, opts...)...)
	if err != nil {
		return nil, err
	}
	r.m = m
	r.unsubscribe = m.Subscribe(r.publish)
	if err := m.Start(ctx); err != nil {
		r.unsubscribe()
		_ = m.Close(ctx)
		return nil, err
	}
	r.addr = m.AdvertisedAddress()
	system.ProcessRegistry.Address = r.addr
	system.ProcessRegistry.RegisterAddressResolver(r.resolve)
	system.Extensions.Register(r)
	return r, nil
}

func validate(system *actor.ActorSystem, cfg *Config) error {
	var errs []error
	if system == nil {
		errs = append(errs, errors.New("nil actor system"))
	}
	if cfg == nil {
		errs = append(errs, errors.New("nil config"))
	} else {
		if cfg.Port < 0 || cfg.Port > 65535 {
			errs = append(errs, fmt.Errorf("port %d out of [0, 65535]", cfg.Port))
		}
		for k, p := range cfg.Kinds {
			if k == "" || p == nil {
				errs = append(errs, fmt.Errorf("kind %q: a kind needs a name and props", k))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// GetRemote returns the courier remote of system, or nil if it has none.
func GetRemote(system *actor.ActorSystem) *Remote {
	r, _ := system.Extensions.Get(extensionID).(*Remote)
	return r
}

// ExtensionID identifies the remote among the actor system's extensions.
func (r *Remote) ExtensionID() extensions.ExtensionID { return extensionID }

// Address returns the node's address, which is also the actor system's.
func (r *Remote) Address() string { return r.addr }

// Manager returns the courier node underneath, for its statistics,
// events and everything else courier offers.
func (r *Remote) Manager() *manager.Manager { return r.m }

// Serializers returns the serializer registry.
func (r *Remote) Serializers() *serial.Registry { return r.ser }

// Shutdown stops the remote: sends to remote PIDs become dead letters
// (reason shutdown), queued envelopes are flushed and their
// acknowledgements awaited until ctx ends, what remains is dead-lettered,
// and every goroutine the remote started has exited when it returns. The
// actor system itself goes on, with local PIDs only. Shutdown is idempotent.
func (r *Remote) Shutdown(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.stopped.Store(true)
		r.closeErr = r.m.Close(ctx)
		r.unsubscribe()
	})
	return r.closeErr
}

// resolve is the actor system's address resolver: every PID on another
// address is courier's, one shared process for all of them.
func (r *Remote) resolve(pid *actor.PID) (actor.Process, bool) {
	if r.stopped.Load() {
		return nil, false
	}
	return r.proc, true
}

// Block refuses the given systems from now on, in both directions (see
// manager.Manager.Block): their endpoints fail, and watchers of their
// actors are told Terminated.
func (r *Remote) Block(systemIDs ...string) {
	for _, id := range systemIDs {
		r.m.Block(id)
	}
}

// Unblock lets the given systems connect again; their incarnations that
// were connected when blocked stay refused until they restart.
func (r *Remote) Unblock(systemIDs ...string) {
	for _, id := range systemIDs {
		r.m.Unblock(id)
	}
}

// Blocked returns the blocked system ids, sorted.
func (r *Remote) Blocked() []string { return r.m.Blocked() }

// IsBlocked reports whether systemID is blocked.
func (r *Remote) IsBlocked(systemID string) bool {
	for _, id := range r.m.Blocked() {
		if id == systemID {
			return true
		}
	}
	return false
}
