package dapr

import (
	"context"
	"errors"
	"net"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parley-im/parley/infrastructure"
)

// opError wraps err, as returned by the SDK, into an *infrastructure.OpError
// whose Kind is the sentinel that err's gRPC code stands for.
//
// withETag says whether the request carried an ETag. daprd answers a
// malformed ETag (one the store could never have issued, so it cannot match)
// with InvalidArgument; for a compare-and-set that is a failed check, so it
// maps to ErrConflict, and the caller re-reads as for any other conflict.
func opError(ctx context.Context, op, key string, err error, withETag bool) *infrastructure.OpError {
	kind := kindOf(ctx, err)
	if withETag && status.Code(err) == codes.InvalidArgument {
		kind = infrastructure.ErrConflict
	}
	// When the caller's ctx ended, say so in the cause, so that
	// errors.Is(err, context.Canceled) works through the OpError.
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = errors.Join(ctxErr, err)
	}
	return &infrastructure.OpError{Op: op, Key: key, Kind: kind, Err: err}
}

// invalid is the OpError for a request refused before reaching daprd.
func invalid(op, key, why string) error {
	return &infrastructure.OpError{Op: op, Key: key, Kind: infrastructure.ErrInvalidArgument, Err: errors.New(why)}
}

// kindOf sorts an SDK error into one of the sentinels.
func kindOf(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return infrastructure.ErrUnavailable
	}
	st, ok := status.FromError(err)
	if !ok {
		var netErr net.Error
		if errors.As(err, &netErr) {
			return infrastructure.ErrUnavailable
		}
		// The SDK refuses some requests itself (an empty key, say) with a
		// plain error, before anything is sent.
		return infrastructure.ErrInvalidArgument
	}
	return kindOfCode(st.Code())
}

func kindOfCode(code codes.Code) error {
	switch code {
	case codes.NotFound:
		return infrastructure.ErrNotFound
	case codes.Aborted, codes.FailedPrecondition, codes.AlreadyExists:
		return infrastructure.ErrConflict
	case codes.InvalidArgument, codes.OutOfRange, codes.Unimplemented,
		codes.PermissionDenied, codes.Unauthenticated:
		return infrastructure.ErrInvalidArgument
	default:
		// Unavailable, DeadlineExceeded, Canceled, ResourceExhausted, and
		// the Internal and Unknown that daprd gives when its backend
		// failed: the operation may or may not have happened.
		return infrastructure.ErrUnavailable
	}
}

// invokeKind sorts an invocation error. When the target app answered over
// HTTP, daprd folds the HTTP status into a gRPC code that loses the
// difference between a bad request and a crash (400 becomes Internal), but
// it keeps the status in an ErrorInfo detail, which is read first.
func invokeKind(ctx context.Context, err error) error {
	st, ok := status.FromError(err)
	if ok && ctx.Err() == nil {
		for _, d := range st.Details() {
			info, ok := d.(*errdetails.ErrorInfo)
			if !ok {
				continue
			}
			code, convErr := strconv.Atoi(info.GetMetadata()["http.code"])
			if convErr != nil {
				continue
			}
			switch code {
			case 400, 422:
				return infrastructure.ErrInvalidArgument
			case 404:
				return infrastructure.ErrNotFound
			case 409:
				return infrastructure.ErrConflict
			default:
				return infrastructure.ErrUnavailable
			}
		}
	}
	return kindOf(ctx, err)
}
