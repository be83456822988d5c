package main

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/courier-go/courier/bench/compare/pb"
)

// The ping/pong scenario is the shape of protoactor-go's own remote
// benchmark: pairs of actors, one on each node; each local actor keeps a
// window of pings in flight to its partner, which answers each with a pong.
// Messages are counted both ways, as that benchmark counts them.

// maxPairs is how many ponger actors the receiving node spawns.
const maxPairs = 64

// pingWindow is how many pings each pair keeps in flight.
const pingWindow = 1000

func pongerName(i int) string { return fmt.Sprintf("ponger-%d", i) }

// pingPonger runs the ping/pong scenario over its sender for about d and
// returns the pongs received; it returns once every ping has been answered.
type pingPonger interface {
	pingpong(s sender, pairs int, d time.Duration) (pongs int64, err error)
}

func (protoactorImpl) pingpong(snd sender, pairs int, d time.Duration) (int64, error) {
	s := snd.(*protoactorSender)
	if pairs > maxPairs {
		return 0, fmt.Errorf("at most %d pairs", maxPairs)
	}
	var pongs atomic.Int64
	var stopping atomic.Bool
	done := make(chan struct{}, pairs)
	pids := make([]*actor.PID, pairs)
	for i := range pairs {
		partner := actor.NewPID(s.addr, pongerName(i))
		inflight := 0 // only the actor's goroutine touches it
		pids[i] = s.system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			switch ctx.Message().(type) {
			case *actor.Started:
				for range pingWindow {
					ctx.Request(partner, &pb.Request{})
				}
				inflight = pingWindow
			case *pb.Response:
				pongs.Add(1)
				if !stopping.Load() {
					ctx.Request(partner, &pb.Request{})
					return
				}
				if inflight--; inflight == 0 {
					done <- struct{}{}
				}
			}
		}))
	}
	defer func() {
		for _, pid := range pids {
			s.system.Root.Stop(pid)
		}
	}()
	time.Sleep(d)
	stopping.Store(true)
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	for range pairs {
		select {
		case <-done:
		case <-timeout.C:
			return pongs.Load(), errors.New("pings unanswered after 60s")
		}
	}
	return pongs.Load(), nil
}

// pingpong measures the ping/pong scenario of name with pairs pairs.
func pingpong(name string, pairs int, d time.Duration) (sample, error) {
	s := sample{Impl: name, Scenario: "pingpong", Senders: pairs}
	pp, ok := impls[name].(pingPonger)
	if !ok {
		return s, errSkip
	}
	c, snd, done, err := connect(name, 0)
	if err != nil {
		return s, err
	}
	defer done()
	if _, err := pp.pingpong(snd, pairs, d/5); err != nil { // warm up
		return s, err
	}
	base, err := c.report()
	if err != nil {
		return s, err
	}
	m := startMeter(base)
	pongs, err := pp.pingpong(snd, pairs, d)
	if err != nil {
		return s, err
	}
	elapsed := time.Since(m.start)
	final, err := c.report()
	if err != nil {
		return s, err
	}
	msgs := float64(2 * pongs) // pings and pongs
	s.MsgsPerS = msgs / elapsed.Seconds()
	m.finish(&s, final, msgs)
	return s, nil
}

// errSkip: the implementation does not run the scenario.
var errSkip = errors.New("scenario not supported")
