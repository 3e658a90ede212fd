package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trousseau-io/trousseau/plugin/kms"
)

// toStatus turns a provider error into the gRPC status the apiserver sees.
// ctx is the caller's: if its deadline ran out, that is the answer whatever
// the provider said.
func toStatus(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.Canceled) {
			return status.Error(codes.Canceled, "caller cancelled the request")
		}
		return status.Error(codes.DeadlineExceeded, "caller deadline exceeded: "+err.Error())
	}
	return status.Error(codeOf(kms.KindOf(err)), err.Error())
}

func codeOf(k kms.Kind) codes.Code {
	switch k {
	case kms.InvalidInput:
		return codes.InvalidArgument
	case kms.Unavailable:
		return codes.Unavailable
	case kms.PermissionDenied:
		return codes.PermissionDenied
	case kms.NotFound:
		return codes.FailedPrecondition
	case kms.DeadlineExceeded:
		return codes.DeadlineExceeded
	default:
		return codes.Internal
	}
}
