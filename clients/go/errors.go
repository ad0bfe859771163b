package occupancy

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrClosed is returned by every call made on a [Client] (or a [Fake]) after
// Close, whatever the failure policy: a closed client never answers
// "occupied". Test for it with errors.Is(err, occupancy.ErrClosed). Like
// every error of this package it is an *Error, with code CANCELED, as in the
// other clients.
var ErrClosed = &Error{Code: codes.Canceled, Message: "client is closed"}

// Error is the error type of failed calls, so callers can branch on the gRPC
// status code (for example retry on UNAVAILABLE, fix their input on
// INVALID_ARGUMENT) without parsing messages. The codes the gate uses are
// listed in proto/occupancy/v1/occupancy.proto; transport failures add
// UNAVAILABLE, DEADLINE_EXCEEDED and CANCELED, and the client's own checks of
// channel names, event names and data give INVALID_ARGUMENT without a call.
//
// It implements GRPCStatus, so status.Code(err) and status.FromError(err)
// work on it and on errors wrapping it. [ErrClosed] is an *Error too.
type Error struct {
	// Code is the gRPC status code of the failed call.
	Code codes.Code
	// Message is the server's (or the gRPC transport's, or the local
	// check's) description of the failure.
	Message string

	st *status.Status
}

// Error formats the failure as "occupancy: CODE: message" so log lines show
// the code without extra work.
func (e *Error) Error() string {
	return fmt.Sprintf("occupancy: %s: %s", e.Code, e.Message)
}

// GRPCStatus exposes the original status, details included, to the grpc
// status package (status.Code, status.FromError, status.Convert).
func (e *Error) GRPCStatus() *status.Status {
	if e.st == nil {
		return status.New(e.Code, e.Message)
	}
	return e.st
}

// Is lets errors.Is(err, context.DeadlineExceeded) and
// errors.Is(err, context.Canceled) hold for the matching codes, as they do for
// other context-aware Go APIs.
func (e *Error) Is(target error) bool {
	switch target {
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	case context.Canceled:
		// A closed client is not a cancelled context.
		return e.Code == codes.Canceled && e != ErrClosed
	}
	return false
}

// invalidArgument is the error of a failed local check.
func invalidArgument(format string, args ...any) *Error {
	return &Error{Code: codes.InvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// toError converts any error from a gRPC call into *Error. Errors that carry
// no gRPC status (rare: local failures before the call is sent) become
// UNKNOWN, and context errors get their matching codes.
func toError(err error) *Error {
	var oe *Error
	if errors.As(err, &oe) {
		return oe
	}
	st := status.Convert(err)
	if st.Code() == codes.Unknown {
		if fromCtx := status.FromContextError(err); fromCtx.Code() != codes.Unknown {
			st = fromCtx
		}
	}
	return &Error{Code: st.Code(), Message: st.Message(), st: st}
}

// IsOutage reports whether err means the gate could not answer right now
// (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, or a transport error,
// which gRPC reports as UNAVAILABLE): the errors for which IsOccupied fails
// open. Every other error is a configuration or caller bug that retrying, or
// answering "occupied", would hide.
func IsOutage(err error) bool {
	if err == nil || errors.Is(err, ErrClosed) {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}
