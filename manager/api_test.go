package manager

import (
	"context"
	"encoding/json"
	"errors"
	"expvar"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/courier-go/courier/batch"
	"github.com/courier-go/courier/internal/wire"
)

// noPanic runs f and turns a panic into a test error, so that one trap does
// not hide the others.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", what, r)
		}
	}()
	f()
}

// closeLater closes m when the test ends.
func closeLater(t *testing.T, m *Manager) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
}

// TestSendChecksWholeEnvelope: Send refuses, synchronously, an envelope
// that can never be sent under the node's limits, whatever field makes it
// so, and queues every one that can, which is delivered. Nothing is
// dead-lettered: the sentinels sent last on each lane arrive after what
// came before them was either delivered or dead-lettered.
func TestSendChecksWholeEnvelope(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	a := newNode(t, newCollector(), WithMaxFrameBytes(64<<10), WithDictionaryLimits(16, 2048))
	b := newNode(t, recv, WithMaxFrameBytes(64<<10))
	long := func(n int) string { return strings.Repeat("x", n) }
	headers := func(n int, distinct bool) []batch.Header {
		h := make([]batch.Header, n)
		for i := range h {
			h[i] = batch.Header{Key: "k", Value: "v"}
			if distinct {
				h[i].Key = fmt.Sprint("k", i)
			}
		}
		return h
	}
	sys := func(env Envelope) Envelope { env.Lane, env.Kind = batch.LaneSystem, batch.KindStop; return env }
	refused := []struct {
		name string
		env  Envelope
		want error
	}{
		{"1 MiB target", Envelope{Target: long(1 << 20)}, ErrTooLarge},
		{"1 MiB type name", Envelope{Target: "t", TypeName: long(1 << 20)}, ErrTooLarge},
		{"long sender id", Envelope{Target: "t", SenderID: long(1025)}, ErrTooLarge},
		{"long sender address", Envelope{Target: "t", SenderAddress: long(1025)}, ErrTooLarge},
		{"long header key", Envelope{Target: "t", Header: []batch.Header{{Key: long(1025)}}}, ErrTooLarge},
		{"1 MiB header value", Envelope{Target: "t", Header: []batch.Header{{Key: "k", Value: long(1 << 20)}}}, ErrTooLarge},
		{"payload and header value past the frame", Envelope{Target: "t", Payload: make([]byte, 40<<10),
			Header: []batch.Header{{Key: "k", Value: long(30 << 10)}}}, ErrTooLarge},
		{"payload at the frame", Envelope{Target: "t", Payload: make([]byte, 64<<10)}, ErrTooLarge},
		{"strings past the dictionary bytes", Envelope{Target: long(1000), TypeName: long(1000) + "y", SenderID: long(100) + "z"}, ErrTooLarge},
		{"5000 headers", Envelope{Target: "t", Header: headers(5000, false)}, ErrInvalidEnvelope},
		{"65 headers", Envelope{Target: "t", Header: headers(65, false)}, ErrInvalidEnvelope},
		{"17 distinct strings", Envelope{Target: "t", Header: headers(16, true)}, ErrInvalidEnvelope},
		{"system lane, 1 MiB target", sys(Envelope{Target: long(1 << 20)}), ErrTooLarge},
		{"system lane, 5000 headers", sys(Envelope{Target: "t", Header: headers(5000, false)}), ErrInvalidEnvelope},
	}
	for _, c := range refused {
		if err := a.Send(context.Background(), b.Addr(), &c.env); !errors.Is(err, c.want) {
			t.Errorf("%s: Send = %v, want %v", c.name, err, c.want)
		}
	}
	if _, ok := a.Stats(b.Addr()); ok {
		t.Errorf("refused envelopes created an endpoint")
	}
	accepted := []Envelope{
		{Target: "64 headers, one key", Header: headers(64, false)},
		{Target: "15 distinct header keys", Header: headers(15, true)},
		{Target: long(1024), TypeName: strings.Repeat("y", 1024)},                       // the dictionary's bytes, exactly
		{Target: long(1024), SenderID: long(1024), TypeName: strings.Repeat("y", 1024)}, // one string twice
		{Target: "payload near the frame", Payload: make([]byte, 64<<10-200)},
		{Target: "header value near the frame", Header: []batch.Header{{Key: "k", Value: long(64<<10 - 200)}}},
	}
	for i := range accepted {
		if err := a.Send(context.Background(), b.Addr(), &accepted[i]); err != nil {
			t.Errorf("Send(%.30q) = %v", accepted[i].Target, err)
		}
	}
	for _, env := range []Envelope{{Target: "sentinel"}, sys(Envelope{Target: "sentinel"})} {
		if err := a.Send(context.Background(), b.Addr(), &env); err != nil {
			t.Fatal(err)
		}
	}
	got := recv.wait(t, len(accepted)+2, 20*time.Second)
	if n := a.DeadLetters(); n != 0 {
		t.Errorf("%d envelopes dead-lettered after Send accepted them", n)
	}
	var user []Envelope
	for _, e := range got {
		if e.Lane == batch.LaneUser {
			user = append(user, e)
		}
	}
	if len(user) != len(accepted)+1 {
		t.Fatalf("%d user envelopes delivered, want %d", len(user), len(accepted)+1)
	}
	for i := range accepted {
		if !user[i].Equal(&accepted[i]) {
			t.Errorf("envelope %d (%.30q) delivered changed", i, accepted[i].Target)
		}
	}
	checkBalanced(t, quiet(t, a, b.Addr()))
}

// TestSendSizeCheckAgreesWithEncoder: an envelope Send's check lets through
// is one a frame encoder takes, on either lane; one it refuses, the encoder
// refuses too, or it is within a few bytes of the frame limit (the check
// bounds the dictionary ids' width from above).
func TestSendSizeCheckAgreesWithEncoder(t *testing.T) {
	t.Parallel()
	lim := batch.DefaultLimits()
	lim.MaxFrameBytes, lim.MaxDictionaryEntries, lim.MaxDictionaryBytes, lim.MaxStringBytes, lim.MaxHeaderEntries = 8<<10, 24, 3000, 1024, 32
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		switch r.IntN(4) {
		case 0:
			return ""
		case 1:
			return strings.Repeat("s", r.IntN(8)+1)
		}
		return strings.Repeat(string(rune('a'+r.IntN(3))), r.IntN(1100))
	}
	var accepted, refusedBoth, nearEdge int
	for i := range 20000 {
		env := Envelope{Target: str() + "t", SenderAddress: str(), SenderID: str(), TypeName: str(),
			RequestID: r.Uint64() >> r.IntN(64), SerializerID: r.Uint32() >> r.IntN(32),
			Payload: make([]byte, r.IntN(9<<10))}
		headers := r.IntN(40)
		if i%2 == 0 {
			headers = 0 // Send's check has a shortcut for these
		}
		for range headers {
			env.Header = append(env.Header, batch.Header{Key: str(), Value: strings.Repeat("v", r.IntN(600))})
		}
		if r.IntN(2) == 0 {
			env.Lane, env.Kind = batch.LaneSystem, batch.SystemKind(r.IntN(5))
			if env.Kind == batch.KindTerminated {
				env.DataPosition = r.Uint64()
			}
		}
		enc, err := batch.NewEncoder(batch.EncoderConfig{Limits: lim, SelfContained: env.Lane == batch.LaneSystem})
		if err != nil {
			t.Fatal(err)
		}
		checkErr := checkEnvelope(&lim, &env)
		addErr := enc.Add(&env)
		switch {
		case checkErr == nil && addErr != nil:
			t.Fatalf("envelope %d passes the check, but the encoder refuses it: %v", i, addErr)
		case checkErr == nil:
			accepted++
		case addErr != nil:
			refusedBoth++
		default:
			if !errors.Is(checkErr, ErrTooLarge) || enc.Size() < lim.MaxFrameBytes-64 {
				t.Fatalf("envelope %d is refused (%v), but the encoder takes it in %d bytes of %d", i, checkErr, enc.Size(), lim.MaxFrameBytes)
			}
			nearEdge++
		}
	}
	if accepted < 1000 || refusedBoth < 1000 {
		t.Fatalf("a poor sample: %d accepted, %d refused by both, %d refused near the frame limit", accepted, refusedBoth, nearEdge)
	}
	t.Logf("%d accepted, %d refused by both, %d refused near the frame limit", accepted, refusedBoth, nearEdge)
}

// TestSendCheckShortcutAtTheFrameLimit: envelopes without header entries,
// whose encoding crosses the frame limit byte by byte, with every varint at
// its widest; the check's shortcut passes none that the encoder refuses.
func TestSendCheckShortcutAtTheFrameLimit(t *testing.T) {
	t.Parallel()
	lim := batch.DefaultLimits()
	lim.MaxFrameBytes = 8 << 10
	var accepted, refused int
	for _, wide := range []bool{false, true} {
		for size := lim.MaxFrameBytes - 200; size <= lim.MaxFrameBytes; size++ {
			env := Envelope{Target: "worker/17", SenderAddress: "10.0.0.7:4000", SenderID: "client/3",
				TypeName: "shop.OrderShipped", Payload: make([]byte, size)}
			if wide {
				env.RequestID, env.SerializerID = ^uint64(0), ^uint32(0)
				env.Lane, env.Kind, env.DataPosition = batch.LaneSystem, batch.KindStop, ^uint64(0)
			}
			enc, err := batch.NewEncoder(batch.EncoderConfig{Limits: lim, SelfContained: true})
			if err != nil {
				t.Fatal(err)
			}
			checkErr, addErr := checkEnvelope(&lim, &env), enc.Add(&env)
			if checkErr == nil && addErr != nil {
				t.Fatalf("a %d-byte payload passes the check, but the encoder refuses it: %v", size, addErr)
			}
			if checkErr == nil {
				accepted++
			} else {
				refused++
			}
		}
	}
	if accepted == 0 || refused == 0 {
		t.Fatalf("%d accepted, %d refused: the sizes miss the limit", accepted, refused)
	}
}

// TestSendCheckAllocatesNothing: the hot path's check of an ordinary
// envelope is a few length checks.
func TestSendCheckAllocatesNothing(t *testing.T) {
	lim := batch.DefaultLimits()
	env := &Envelope{Target: "worker/17", SenderID: "client/3", TypeName: "shop.OrderShipped", Payload: make([]byte, 256),
		Header: []batch.Header{{Key: "trace", Value: "0af7651916cd43dd8448eb211c80319c"}}}
	// AllocsPerRun counts the whole process's allocations: the fewest of a
	// few runs is the check's.
	n := 1.0
	for range 5 {
		n = min(n, testing.AllocsPerRun(100, func() { _ = checkEnvelope(&lim, env) }))
	}
	if n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

// TestNewNilOption: a nil option is an invalid option, not a panic.
func TestNewNilOption(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]Option{
		"New(nil)":              {nil},
		"New(WithHandler, nil)": {WithHandler(newCollector()), nil},
	} {
		noPanic(t, name, func() {
			m, err := New(opts...)
			if !errors.Is(err, ErrInvalidOption) {
				t.Errorf("%s = %v, want ErrInvalidOption", name, err)
			}
			if m != nil {
				closeLater(t, m)
			}
		})
	}
}

// TestSendNilEnvelope: a nil envelope is an invalid envelope, not a panic.
func TestSendNilEnvelope(t *testing.T) {
	t.Parallel()
	a := newNode(t, newCollector())
	b := newNode(t, newCollector())
	noPanic(t, "Send(nil)", func() {
		if err := a.Send(context.Background(), b.Addr(), nil); !errors.Is(err, ErrInvalidEnvelope) {
			t.Errorf("Send(nil) = %v, want ErrInvalidEnvelope", err)
		}
	})
}

// TestZeroValueManager: every exported method of a Manager not made by New,
// a zero value or nil, returns ErrNotInitialized, or zero values when it
// returns no error; none panics.
func TestZeroValueManager(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := &Envelope{Target: "t"}
	name := fmt.Sprintf("courier-test-zero-%d", time.Now().UnixNano())
	errs := map[string]func(m *Manager) error{
		"Start":              func(m *Manager) error { return m.Start(ctx) },
		"Send":               func(m *Manager) error { return m.Send(ctx, "127.0.0.1:1", env) },
		"Close":              func(m *Manager) error { return m.Close(ctx) },
		"Watch":              func(m *Manager) error { return m.Watch(ctx, "127.0.0.1:1", "w", "t") },
		"Unwatch":            func(m *Manager) error { return m.Unwatch(ctx, "127.0.0.1:1", "w", "t") },
		"PublishExpvar":      func(m *Manager) error { return m.PublishExpvar(name) },
		"ListProcesses":      func(m *Manager) error { _, err := m.ListProcesses(ctx, "127.0.0.1:1", ""); return err },
		"ProcessDiagnostics": func(m *Manager) error { _, err := m.ProcessDiagnostics(ctx, "127.0.0.1:1", "p"); return err },
		"Spawn":              func(m *Manager) error { _, err := m.Spawn(ctx, "127.0.0.1:1", "k"); return err },
		"SpawnNamed":         func(m *Manager) error { _, err := m.SpawnNamed(ctx, "127.0.0.1:1", "k", "n"); return err },
	}
	// The others return zero values: each function reports what is not.
	zeros := map[string]func(m *Manager) string{
		"SystemID":          func(m *Manager) string { return nonZero(m.SystemID()) },
		"Incarnation":       func(m *Manager) string { return nonZero(m.Incarnation()) },
		"Addr":              func(m *Manager) string { return nonZero(m.Addr()) },
		"AdvertisedAddress": func(m *Manager) string { return nonZero(m.AdvertisedAddress()) },
		"DroppedEvents":     func(m *Manager) string { return nonZero(m.DroppedEvents()) },
		"DeadLetters":       func(m *Manager) string { return nonZero(m.DeadLetters()) },
		"Stats": func(m *Manager) string {
			s, ok := m.Stats("127.0.0.1:1")
			return nonZero(s.Address) + nonZero(ok)
		},
		"AllStats": func(m *Manager) string { return nonZero(len(m.AllStats())) },
		"Blocked":  func(m *Manager) string { return nonZero(len(m.Blocked())) },
		"Watches":  func(m *Manager) string { return nonZero(m.Watches("127.0.0.1:1")) },
		"LaneWanted": func(m *Manager) string {
			return nonZero(m.LaneWanted(Peer{SystemID: "x"}, batch.LaneUser))
		},
		"Snapshot":  func(m *Manager) string { s := m.Snapshot(); return nonZero(len(s.Endpoints) + len(s.Blocked)) },
		"Block":     func(m *Manager) string { m.Block("x"); return nonZero(len(m.Blocked())) },
		"Unblock":   func(m *Manager) string { m.Unblock("x"); return "" },
		"Subscribe": func(m *Manager) string { unsubscribe := m.Subscribe(func(Event) {}); unsubscribe(); return "" },
	}
	typ := reflect.TypeFor[*Manager]()
	for i := range typ.NumMethod() {
		if n := typ.Method(i).Name; errs[n] == nil && zeros[n] == nil {
			t.Errorf("Manager.%s is not in the table", n)
		}
	}
	for _, c := range []struct {
		what string
		m    func() *Manager
	}{
		{"zero value", func() *Manager { return new(Manager) }},
		{"nil", func() *Manager { return nil }},
	} {
		for n, f := range errs {
			noPanic(t, c.what+"."+n, func() {
				if err := f(c.m()); !errors.Is(err, ErrNotInitialized) {
					t.Errorf("%s.%s = %v, want ErrNotInitialized", c.what, n, err)
				}
			})
		}
		for n, f := range zeros {
			noPanic(t, c.what+"."+n, func() {
				if s := f(c.m()); s != "" {
					t.Errorf("%s.%s returned %s", c.what, n, s)
				}
			})
		}
	}
	if expvar.Get(name) != nil {
		t.Errorf("PublishExpvar on a zero value published %q", name)
	}
}

func nonZero[T comparable](v T) string {
	var zero T
	if v == zero {
		return ""
	}
	return fmt.Sprintf("%v ", v)
}

// TestSendInvalidAddress: an address that cannot be parsed is refused at
// Send with ErrInvalidAddress naming it, and makes no endpoint; a client-only
// peer's address is not taken for one.
func TestSendInvalidAddress(t *testing.T) {
	t.Parallel()
	a := newNode(t, newCollector())
	for _, addr := range []string{"", "not-an-address", ":4000", "host:", "host:0", "host:65536", "host:http", "host:-1",
		"host:1:2", "[::1]", "127.0.0.1"} {
		err := a.Send(context.Background(), addr, &Envelope{Target: "t"})
		if !errors.Is(err, ErrInvalidAddress) || !strings.Contains(err.Error(), fmt.Sprintf("%q", addr)) {
			t.Errorf("Send to %q = %v, want ErrInvalidAddress naming it", addr, err)
		}
		if _, ok := a.Stats(addr); ok {
			t.Errorf("Send to %q made an endpoint", addr)
		}
	}
	if err := a.Send(context.Background(), ClientAddressPrefix+"nobody:1", &Envelope{Target: "t"}); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("Send to an unknown client = %v, want ErrUnknownClient", err)
	}
}

// TestSendBeforeStart: a node with a listen address refuses Send until it
// has started, so no peer ever records it as client-only; once started, its
// peers see its listen address. A client-only node sends without Start.
func TestSendBeforeStart(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	b := newNode(t, recv)
	a, err := New(WithListenAddress("127.0.0.1:0"), WithHandler(newCollector()))
	if err != nil {
		t.Fatal(err)
	}
	closeLater(t, a)
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "early"}); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Send before Start = %v, want ErrNotStarted", err)
	}
	if err := a.Watch(context.Background(), b.Addr(), "w", "t"); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Watch before Start = %v, want ErrNotStarted", err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "late"}); err != nil {
		t.Fatal(err)
	}
	c, err := New(WithHandler(newCollector()))
	if err != nil {
		t.Fatal(err)
	}
	closeLater(t, c)
	if err := c.Send(context.Background(), b.Addr(), &Envelope{Target: "client"}); err != nil {
		t.Fatalf("a client-only node's Send = %v", err)
	}
	recv.wait(t, 2, 20*time.Second)
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for i, e := range recv.envs {
		switch from := recv.from[i]; e.Target {
		case "late":
			if from.Address != a.Addr() {
				t.Errorf("the started node's envelope came from %q, want its listen address %q", from.Address, a.Addr())
			}
		case "client":
			if !strings.HasPrefix(from.Address, ClientAddressPrefix) {
				t.Errorf("the client-only node's envelope came from %q", from.Address)
			}
		default:
			t.Errorf("envelope %q delivered", e.Target)
		}
	}
}

// TestNewValidatesSystemIDAndListen: New refuses an explicit empty system
// id, one with characters that do not belong in an address, and a listen
// address that cannot be parsed, naming each; a missing system id is a
// random one.
func TestNewValidatesSystemIDAndListen(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"", "a:b", "a b", "a\tb", " a", "a\n", "a/b", "é", "a@b"} {
		m, err := New(WithHandler(newCollector()), WithSystemID(id))
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), fmt.Sprintf("WithSystemID(%q)", id)) {
			t.Errorf("WithSystemID(%q): New = %v, want ErrInvalidOption naming it", id, err)
		}
		if m != nil {
			closeLater(t, m)
		}
	}
	for _, addr := range []string{"not-an-address", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:x", "127.0.0.1:-1", "[::1"} {
		m, err := New(WithHandler(newCollector()), WithListenAddress(addr))
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), fmt.Sprintf("WithListenAddress(%q)", addr)) {
			t.Errorf("WithListenAddress(%q): New = %v, want ErrInvalidOption naming it", addr, err)
		}
		if m != nil {
			closeLater(t, m)
		}
	}
	_, err := New(WithHandler(newCollector()), WithSystemID("a b"), WithListenAddress("nowhere"))
	if err == nil || !strings.Contains(err.Error(), "WithSystemID") || !strings.Contains(err.Error(), "WithListenAddress") {
		t.Errorf("two bad options: New = %v, want both named", err)
	}
	for _, opts := range [][]Option{
		{WithSystemID("orders-2.eu_west"), WithListenAddress("127.0.0.1:0")},
		{WithSystemID("A9"), WithListenAddress(":0")},
		{WithListenAddress("localhost:0")},
		{},
	} {
		m, err := New(append(opts, WithHandler(newCollector()))...)
		if err != nil {
			t.Errorf("New = %v", err)
			continue
		}
		closeLater(t, m)
		if len(opts) == 0 && !regexp.MustCompile(`^node-[0-9a-f]{8}$`).MatchString(m.SystemID()) {
			t.Errorf("no WithSystemID: system id %q, want node- and 8 random hex digits", m.SystemID())
		}
	}
}

// TestParseOverflowPolicyNames: each policy's String parses back to it,
// and so does the constant's own name, in any case.
func TestParseOverflowPolicyNames(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		p     OverflowPolicy
		names []string
	}{
		{DropNewest, []string{"drop-newest", "DropNewest", "dropnewest", "DROP-NEWEST"}},
		{Block, []string{"block", "Block", "BLOCK"}},
		{Fail, []string{"fail", "Fail", "FAIL"}},
	} {
		for _, s := range append(c.names, c.p.String()) {
			if got, err := ParseOverflowPolicy(s); err != nil || got != c.p {
				t.Errorf("ParseOverflowPolicy(%q) = %v, %v, want %v", s, got, err, c.p)
			}
		}
	}
	for _, s := range []string{"", "drop", "drop newest", "policy(3)", OverflowPolicy(3).String()} {
		if _, err := ParseOverflowPolicy(s); err == nil {
			t.Errorf("ParseOverflowPolicy(%q) succeeded", s)
		}
	}
}

// TestSendKindOnUserLane: a system kind belongs on the system lane; on the
// user lane Send refuses it.
func TestSendKindOnUserLane(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	a := newNode(t, newCollector())
	b := newNode(t, recv)
	for _, k := range []batch.SystemKind{batch.KindWatch, batch.KindUnwatch, batch.KindTerminated, batch.KindStop, 9} {
		if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "t", SenderID: "w", Kind: k}); !errors.Is(err, ErrInvalidEnvelope) {
			t.Errorf("Send of kind %v on the user lane = %v, want ErrInvalidEnvelope", k, err)
		}
	}
	// An unknown kind on the system lane would be refused by the peer and
	// resent after every reconnect: Send refuses it.
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "t", Lane: batch.LaneSystem, Kind: batch.KindStop + 1}); !errors.Is(err, ErrInvalidEnvelope) {
		t.Errorf("Send of an unknown kind on the system lane = %v, want ErrInvalidEnvelope", err)
	}
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "sentinel"}); err != nil {
		t.Fatal(err)
	}
	if got := recv.wait(t, 1, 20*time.Second); len(got) != 1 || got[0].Target != "sentinel" {
		t.Errorf("delivered %+v, want the sentinel alone", got)
	}
}

// TestReExportedErrors: the errors the README's limits table names can be
// matched with manager's own names.
func TestReExportedErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ ours, theirs error }{
		{ErrHandshake, wire.ErrHandshake},
		{ErrFrameTooLarge, batch.ErrFrameTooLarge},
		{ErrDictionaryOverflow, batch.ErrDictionaryOverflow},
	} {
		if !errors.Is(fmt.Errorf("stream: %w", c.theirs), c.ours) {
			t.Errorf("%v does not match %v", c.theirs, c.ours)
		}
	}
}

// TestDeadLetterCountsNamed: the dead-letter counts print and marshal with
// the reasons' names, and index by reason as before.
func TestDeadLetterCountsNamed(t *testing.T) {
	t.Parallel()
	var ls LaneStats
	ls.DeadLettered[ReasonQueueFull] = 3
	ls.DeadLettered[ReasonShutdown] = 1
	if s := fmt.Sprint(ls.DeadLettered); !strings.Contains(s, "queue full: 3") || !strings.Contains(s, "shutdown: 1") ||
		!strings.Contains(s, "too large: 0") {
		t.Errorf("fmt.Sprint = %s, want each reason's name and count", s)
	}
	if s := fmt.Sprintf("%+v", ls); !strings.Contains(s, "queue full: 3") {
		t.Errorf("%%+v of LaneStats = %s, want the reasons' names", s)
	}
	b, err := json.Marshal(ls)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct{ DeadLettered map[string]uint64 }
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("JSON %s: %v", b, err)
	}
	if raw.DeadLettered["queue full"] != 3 || raw.DeadLettered["shutdown"] != 1 || len(raw.DeadLettered) != len(ls.DeadLettered) {
		t.Errorf("JSON %s, want every reason by name", b)
	}
	var back LaneStats
	if err := json.Unmarshal(b, &back); err != nil || back != ls {
		t.Errorf("JSON round trip: %+v, %v, want %+v", back, err, ls)
	}
}
