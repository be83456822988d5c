package batch

import "errors"

// Errors returned by the Encoder and the Decoder. Each error returned wraps
// exactly one of these; compare with errors.Is.
var (
	// ErrCorruptFrame: the bytes are not a well-formed frame.
	ErrCorruptFrame = errors.New("batch: corrupt frame")
	// ErrFrameTooLarge: the frame, or its declared decompressed size, is
	// above Limits.MaxFrameBytes.
	ErrFrameTooLarge = errors.New("batch: frame too large")
	// ErrTooManyEnvelopes: a batch holds more than
	// Limits.MaxBatchEnvelopes envelopes.
	ErrTooManyEnvelopes = errors.New("batch: too many envelopes in frame")
	// ErrTooManyHeaders: an envelope has more than Limits.MaxHeaderEntries
	// header entries.
	ErrTooManyHeaders = errors.New("batch: too many header entries")
	// ErrDictionaryOverflow: dictionary additions beyond
	// Limits.MaxDictionaryEntries or MaxDictionaryBytes, or a string longer
	// than Limits.MaxStringBytes.
	ErrDictionaryOverflow = errors.New("batch: dictionary overflow")
	// ErrUnknownString: an envelope refers to a dictionary id that has not
	// been defined on the stream.
	ErrUnknownString = errors.New("batch: unknown dictionary id")
	// ErrEnvelopeTooLarge: an envelope cannot fit in a frame of
	// Limits.MaxFrameBytes even on its own, or has a string longer than
	// Limits.MaxStringBytes or more headers than Limits.MaxHeaderEntries. It
	// is refused, not sent.
	ErrEnvelopeTooLarge = errors.New("batch: envelope too large")
	// ErrFrameFull: the envelope does not fit in the frame being built, but
	// would fit in an empty one. Flush, then add it again.
	ErrFrameFull = errors.New("batch: frame full")
	// ErrInvalidLimits: a Limits value is out of range; see Limits.Validate.
	ErrInvalidLimits = errors.New("batch: invalid limits")
)
