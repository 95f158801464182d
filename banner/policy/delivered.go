package policy

import (
	"net/netip"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/policyd"
)

// delivered reports that Postfix accepted a message from addr: an
// END-OF-MESSAGE request (smtpd_end_of_data_restrictions), which Postfix
// sends only for a message it received whole. The address is the
// request's client_address, which smtpd fills in, never client text.
func (h *Handler) delivered(addr netip.Addr, req *policyd.Request) {
	h.deliveries.Add(1)
	ev := banner.Event{Addr: addr, Kind: banner.KindDelivered, Time: time.Now(), Source: banner.SourcePolicy,
		Reason: "delivered (END-OF-MESSAGE)", Origin: "policy END-OF-MESSAGE"}
	if q := req.QueueID(); q != "" {
		ev.Key = q
		ev.Reason = "delivered, queue id " + q + " (END-OF-MESSAGE)"
	}
	h.engine.Report(ev)
}
