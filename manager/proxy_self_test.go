package manager

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/courier-go/courier/internal/testutil"
)

// stepTimeout bounds each test step. It is generous because timers on a
// loaded CI machine can fire far later than asked.
const stepTimeout = 10 * time.Second

// startEchoServer runs a TCP echo server on 127.0.0.1:0 until the test ends.
func startEchoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("echo listen: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dialProxy connects to addr; the connection is closed when the test ends.
func dialProxy(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, stepTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo writes msg on c and reads it back, within stepTimeout.
func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(stepTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

// readUntilErr reads from c until an error and returns the bytes read and the
// error. It fails the test if no error other than a timeout arrives within d.
func readUntilErr(t *testing.T, c net.Conn, d time.Duration) ([]byte, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var got []byte
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("no error within %v (read %d bytes)", d, len(got))
			}
			return got, err
		}
	}
}

// waitConns waits up to stepTimeout for p.Conns() to equal want.
func waitConns(t *testing.T, p *faultProxy, want int) {
	t.Helper()
	testutil.Eventually(t, fmt.Sprintf("the proxy to hold %d connections", want), stepTimeout, func() bool { return p.Conns() == want })
}

func TestInjectingProxy(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) *faultProxy {
		return newFaultProxy(t, startEchoServer(t))
	}

	t.Run("PassThrough", func(t *testing.T) {
		p := setup(t)
		c := dialProxy(t, p.Addr())
		echo(t, c, "hello")
		echo(t, c, string(bytes.Repeat([]byte("x"), 100_000)))
		waitConns(t, p, 1)
		c.Close()
		waitConns(t, p, 0)
	})

	t.Run("SetTarget", func(t *testing.T) {
		p := setup(t)
		p.SetTarget(startEchoServer(t))
		echo(t, dialProxy(t, p.Addr()), "other target")
		p.SetTarget("127.0.0.1:1") // nothing listens: client is closed
		readUntilErr(t, dialProxy(t, p.Addr()), stepTimeout)
	})

	t.Run("Cut", func(t *testing.T) {
		p := setup(t)
		c := dialProxy(t, p.Addr())
		echo(t, c, "before")
		cut := make(chan struct{})
		go func() { time.Sleep(50 * time.Millisecond); p.Cut(); close(cut) }()
		readUntilErr(t, c, stepTimeout) // blocked Read returns
		<-cut
		waitConns(t, p, 0)
		echo(t, dialProxy(t, p.Addr()), "after")
	})

	t.Run("Reset", func(t *testing.T) {
		p := setup(t)
		c := dialProxy(t, p.Addr())
		echo(t, c, "before")
		p.Reset()
		if _, err := readUntilErr(t, c, 2*time.Second); err == nil {
			t.Fatal("want read error after Reset")
		}
		waitConns(t, p, 0)
		echo(t, dialProxy(t, p.Addr()), "after")
	})

	t.Run("BlackHole", func(t *testing.T) {
		p := setup(t)
		c1 := dialProxy(t, p.Addr())
		echo(t, c1, "before")
		p.BlackHole(true)
		c2 := dialProxy(t, p.Addr()) // opened while black-holed
		for _, c := range []net.Conn{c1, c2} {
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := c.Write([]byte("lost")); err != nil {
				t.Fatalf("write: %v", err)
			}
			if n, err := c.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read while black-holed: n=%d err=%v, want timeout", n, err)
			}
		}
		waitConns(t, p, 2) // both still open
		p.BlackHole(false)
		readUntilErr(t, c1, stepTimeout) // black-holed conns are closed
		readUntilErr(t, c2, stepTimeout)
		echo(t, dialProxy(t, p.Addr()), "after")
	})

	t.Run("Delay", func(t *testing.T) {
		p := setup(t)
		c := dialProxy(t, p.Addr())
		echo(t, c, "warm")
		p.SetDelay(100 * time.Millisecond)
		start := time.Now()
		echo(t, c, "slow")
		if el := time.Since(start); el < 100*time.Millisecond {
			t.Fatalf("echo took %v, want >= 100ms", el)
		}
		p.SetDelay(0)
		echo(t, c, "fast")
	})

	t.Run("ResetMidFrame", func(t *testing.T) {
		p := setup(t)
		c := dialProxy(t, p.Addr())
		echo(t, c, "small") // < 64 bytes, must not trigger
		p.ResetMidFrame()
		c.SetWriteDeadline(time.Now().Add(stepTimeout))
		if _, err := c.Write(bytes.Repeat([]byte("m"), 200)); err != nil {
			t.Fatalf("write: %v", err)
		}
		got, err := readUntilErr(t, c, stepTimeout)
		if err == nil || len(got) > 100 {
			t.Fatalf("read %d bytes, err %v; want <= 100 bytes then an error", len(got), err)
		}
		waitConns(t, p, 0)
		echo(t, dialProxy(t, p.Addr()), string(bytes.Repeat([]byte("n"), 200))) // one-shot
	})

	t.Run("Refuse", func(t *testing.T) {
		p := setup(t)
		p.Refuse(true)
		readUntilErr(t, dialProxy(t, p.Addr()), stepTimeout)
		p.Refuse(false)
		echo(t, dialProxy(t, p.Addr()), "back")
	})

	t.Run("Close", func(t *testing.T) {
		p := setup(t)
		c := dialProxy(t, p.Addr())
		echo(t, c, "hi")
		p.Close()
		p.Close() // idempotent
		if n := p.Conns(); n != 0 {
			t.Fatalf("Conns() after Close = %d", n)
		}
		readUntilErr(t, c, stepTimeout)
	})
}
