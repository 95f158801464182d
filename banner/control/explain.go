package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
)

// Explainer is implemented by a Handler that answers CmdExplain: one
// address's story (banner explain), any JSON-encodable value.
type Explainer interface {
	Explain(ctx context.Context, addr netip.Addr) (any, error)
}

func (s *Server) explain(ctx context.Context, req Request) Response {
	ex, ok := s.h.(Explainer)
	if !ok {
		return Response{Error: "this daemon does not answer explain", Code: CodeBadRequest}
	}
	addr, err := netip.ParseAddr(req.Prefix)
	if err != nil {
		return Response{Error: fmt.Sprintf("explain: %q is not an IP address", req.Prefix), Code: CodeInvalidPrefix}
	}
	v, err := ex.Explain(ctx, addr.Unmap())
	if err != nil {
		return errorResponse(err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return errorResponse(errors.Join(errors.New("encoding explanation"), err))
	}
	return Response{OK: true, Explain: raw}
}
