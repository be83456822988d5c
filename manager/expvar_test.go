package manager

import (
	"context"
	"encoding/json"
	"expvar"
	"fmt"
	"testing"
	"time"
)

func TestPublishExpvar(t *testing.T) {
	t.Parallel()
	recv := newCollector()
	a := newNode(t, newCollector())
	b := newNode(t, recv)
	name := fmt.Sprintf("courier-test-%x", a.Incarnation()) // unique: expvar names are global, and -count reruns
	if err := a.PublishExpvar(name); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishExpvar(name); err == nil {
		t.Fatal("publishing a taken name succeeded")
	}
	if err := a.Send(context.Background(), b.Addr(), &Envelope{Target: "x"}); err != nil {
		t.Fatal(err)
	}
	recv.wait(t, 1, 20*time.Second)
	var got NodeStats
	if err := json.Unmarshal([]byte(expvar.Get(name).String()), &got); err != nil {
		t.Fatal(err)
	}
	if got.SystemID != a.SystemID() || got.Incarnation != a.Incarnation() || got.Addr != a.Addr() {
		t.Errorf("published node %q %x %q, want %q %x %q", got.SystemID, got.Incarnation, got.Addr, a.SystemID(), a.Incarnation(), a.Addr())
	}
	if len(got.Endpoints) != 1 || got.Endpoints[0].Address != b.Addr() || got.Endpoints[0].User.Enqueued != 1 {
		t.Errorf("published endpoints %+v, want one to %s with 1 envelope enqueued", got.Endpoints, b.Addr())
	}
}
