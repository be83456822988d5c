package batch

import (
	"errors"
	"fmt"

	courierv1 "github.com/courier-go/courier/proto/courier/v1"
)

// Limits bound what a stream may carry. Both ends of a stream agree on them
// in the handshake (courier.v1.Limits): the sender's Encoder keeps inside
// them and the receiver's Decoder refuses anything outside them.
type Limits struct {
	// MaxFrameBytes is the largest frame, counted after decompression and
	// including the flags byte. Default 4 MiB; at least 4 KiB, at most
	// 64 MiB.
	MaxFrameBytes int
	// MaxBatchEnvelopes is the most envelopes in one frame. Default 8192;
	// at least 1, at most 65536.
	MaxBatchEnvelopes int
	// MaxDictionaryEntries is the most strings a stream's dictionary holds.
	// Default 16384; at least 16, at most 1<<20.
	MaxDictionaryEntries int
	// MaxDictionaryBytes is the most bytes, summed over string lengths, a
	// stream's dictionary holds. Default 1 MiB; at least MaxStringBytes, at
	// most 64 MiB.
	MaxDictionaryBytes int
	// MaxStringBytes is the longest interned string (process id, address,
	// type name, header key). Default 1024; at least 64, at most 1 MiB.
	MaxStringBytes int
	// MaxHeaderEntries is the most header entries on one envelope. Default
	// 64; at least 1, at most 4096.
	MaxHeaderEntries int
}

// DefaultLimits returns the limits a stream uses when neither side asks for
// less.
func DefaultLimits() Limits {
	return Limits{
		MaxFrameBytes:        4 << 20,
		MaxBatchEnvelopes:    8192,
		MaxDictionaryEntries: 16384,
		MaxDictionaryBytes:   1 << 20,
		MaxStringBytes:       1024,
		MaxHeaderEntries:     64,
	}
}

// Validate reports every field out of range at once, in one error that
// wraps ErrInvalidLimits.
func (l Limits) Validate() error {
	var errs []error
	check := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s = %d, want [%d, %d]", name, v, lo, hi))
		}
	}
	check("MaxFrameBytes", l.MaxFrameBytes, 4<<10, 64<<20)
	check("MaxBatchEnvelopes", l.MaxBatchEnvelopes, 1, 1<<16)
	check("MaxDictionaryEntries", l.MaxDictionaryEntries, 16, 1<<20)
	check("MaxStringBytes", l.MaxStringBytes, 64, 1<<20)
	check("MaxDictionaryBytes", l.MaxDictionaryBytes, max(l.MaxStringBytes, 64), 64<<20)
	check("MaxHeaderEntries", l.MaxHeaderEntries, 1, 4096)
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidLimits, errors.Join(errs...))
}

// Min returns the smaller of each pair of fields: the limits two sides that
// proposed l and o can both live with.
func (l Limits) Min(o Limits) Limits {
	return Limits{
		MaxFrameBytes:        min(l.MaxFrameBytes, o.MaxFrameBytes),
		MaxBatchEnvelopes:    min(l.MaxBatchEnvelopes, o.MaxBatchEnvelopes),
		MaxDictionaryEntries: min(l.MaxDictionaryEntries, o.MaxDictionaryEntries),
		MaxDictionaryBytes:   min(l.MaxDictionaryBytes, o.MaxDictionaryBytes),
		MaxStringBytes:       min(l.MaxStringBytes, o.MaxStringBytes),
		MaxHeaderEntries:     min(l.MaxHeaderEntries, o.MaxHeaderEntries),
	}
}

// Proto returns l as the wire's courier.v1.Limits.
func (l Limits) Proto() *courierv1.Limits {
	return &courierv1.Limits{
		MaxFrameBytes:        uint32(l.MaxFrameBytes),
		MaxBatchEnvelopes:    uint32(l.MaxBatchEnvelopes),
		MaxDictionaryEntries: uint32(l.MaxDictionaryEntries),
		MaxDictionaryBytes:   uint32(l.MaxDictionaryBytes),
		MaxStringBytes:       uint32(l.MaxStringBytes),
		MaxHeaderEntries:     uint32(l.MaxHeaderEntries),
	}
}

// LimitsFromProto converts the wire's limits. A zero field, "no preference",
// takes the value from def.
func LimitsFromProto(p *courierv1.Limits, def Limits) Limits {
	pick := func(v uint32, d int) int {
		if v == 0 {
			return d
		}
		return int(min(v, 1<<31-1))
	}
	return Limits{
		MaxFrameBytes:        pick(p.GetMaxFrameBytes(), def.MaxFrameBytes),
		MaxBatchEnvelopes:    pick(p.GetMaxBatchEnvelopes(), def.MaxBatchEnvelopes),
		MaxDictionaryEntries: pick(p.GetMaxDictionaryEntries(), def.MaxDictionaryEntries),
		MaxDictionaryBytes:   pick(p.GetMaxDictionaryBytes(), def.MaxDictionaryBytes),
		MaxStringBytes:       pick(p.GetMaxStringBytes(), def.MaxStringBytes),
		MaxHeaderEntries:     pick(p.GetMaxHeaderEntries(), def.MaxHeaderEntries),
	}
}
