package courierremote

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/manager"
	courierv1 "github.com/courier-go/courier/proto/courier/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BenchmarkSend floods an actor with 64 B messages from b's parallel
// goroutines and waits until it has them all: impl=local is
// protoactor-go's local send, the reference; impl=courier sends them to
// another actor system in this process, through courier. msg=vtproto is a
// message with vtprotobuf's methods (the fast path), msg=proto one
// without. Both nodes' costs count, as both run here.
func BenchmarkSend(b *testing.B) {
	payload := make([]byte, 64)
	msgs := map[string]func() proto.Message{
		"vtproto": func() proto.Message { return &courierv1.Envelope{Payload: payload} },
		"proto":   func() proto.Message { return wrapperspb.Bytes(payload) },
	}
	for _, m := range []string{"vtproto", "proto"} {
		for _, impl := range []string{"local", "courier"} {
			b.Run("msg="+m+"/impl="+impl, func(b *testing.B) {
				benchSend(b, impl == "courier", msgs[m])
			})
		}
	}
}

func benchSend(b *testing.B, remote bool, newMsg func() proto.Message) {
	var got atomic.Int64
	want := int64(b.N)
	done := make(chan struct{})
	sinkProps := actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *courierv1.Envelope, *wrapperspb.BytesValue:
			if got.Add(1) == want {
				close(done)
			}
		}
	})
	receiver := quietSystem()
	defer receiver.Shutdown()
	sender := receiver
	if remote {
		sender = quietSystem()
		defer sender.Shutdown()
		for _, s := range []*actor.ActorSystem{receiver, sender} {
			r, err := Start(context.Background(), s, Configure("127.0.0.1", 0), manager.WithOverflowPolicy(manager.Block))
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = r.Shutdown(ctx)
			}()
		}
	}
	pid, err := receiver.Root.SpawnNamed(sinkProps, "sink")
	if err != nil {
		b.Fatal(err)
	}
	target := actor.NewPID(pid.Address, pid.Id)
	b.ReportAllocs()
	b.SetBytes(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sender.Root.Send(target, newMsg())
		}
	})
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d delivered", got.Load(), want)
	}
}
