package firewall

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file reads, over netlink, the little the iptables backend needs to
// know about its chain when iptables is iptables-nft, without listing the
// chain: whether it exists and what its first rule is. With iptables-nft
// every iptables command that names the chain (iptables -S CHAIN 1,
// iptables -C, the go-iptables existence check) dumps all its rules, and
// the kernel takes seconds to dump a chain of 100k (each dump step walks
// the chain from its start), longer than iptables-restore takes to fill
// one. A request for one chain and the first part of a rule dump cost
// milliseconds.

// chainHead is what nftChainHead found.
type chainHead int

const (
	headMissing chainHead = iota // no such chain (or no filter table)
	headEmpty                    // the chain exists and holds no rule
	headDrop                     // its first rule is of the backend's form, -s PREFIX -j DROP
	headOther                    // its first rule is something else
)

// isIPTablesNFT reports whether f's command is iptables-nft (its --version
// says nf_tables).
func (r *runner) isIPTablesNFT(ctx context.Context, f *family) bool {
	out, err := r.run(ctx, nil, f.cmd, "--version")
	return err == nil && strings.Contains(string(out), "nf_tables")
}

// nftChainHead looks up chain in iptables-nft's filter table of f's family
// and reads its first rule, over netlink.
func (r *runner) nftChainHead(ctx context.Context, f *family, chain string) (chainHead, error) {
	var head chainHead
	err := r.bounded(ctx, func() (err error) {
		head, err = readChainHead(f.name == "IPv6", chain)
		return err
	})
	if err != nil {
		return headOther, fmt.Errorf("reading the head of %s chain %s over netlink: %w", f.name, chain, err)
	}
	return head, nil
}

// nftMsgType is the netlink message type of nf_tables message msg.
func nftMsgType(msg int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// readChainHead is nftChainHead's netlink exchange: a GETCHAIN for the
// chain, then a GETRULE dump of which only the first batch is read; the
// socket is closed with the dump unfinished, which ends it.
func readChainHead(v6 bool, chain string) (chainHead, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return headOther, err
	}
	defer c.Close()
	fam := byte(unix.NFPROTO_IPV4)
	if v6 {
		fam = unix.NFPROTO_IPV6
	}
	req := func(attrTable, attrChain uint16) ([]byte, error) {
		ae := netlink.NewAttributeEncoder()
		ae.String(attrTable, table)
		ae.String(attrChain, chain)
		b, err := ae.Encode()
		return append([]byte{fam, unix.NFNETLINK_V0, 0, 0}, b...), err
	}
	data, err := req(unix.NFTA_CHAIN_TABLE, unix.NFTA_CHAIN_NAME)
	if err != nil {
		return headOther, err
	}
	if _, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: nftMsgType(unix.NFT_MSG_GETCHAIN), Flags: netlink.Request},
		Data:   data,
	}); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return headMissing, nil
		}
		return headOther, err
	}
	if data, err = req(unix.NFTA_RULE_TABLE, unix.NFTA_RULE_CHAIN); err != nil {
		return headOther, err
	}
	return firstRule(data, v6)
}

// firstRule starts a GETRULE dump with data and reads one batch of it on
// a socket of its own, closed with the dump unfinished, which ends it
// (netlink.Conn's Receive would read the dump to its end).
func firstRule(data []byte, v6 bool) (chainHead, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return headOther, err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10}); err != nil {
		return headOther, err
	}
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return headOther, err
	}
	req := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(data))
	binary.NativeEndian.PutUint32(req[0:], uint32(unix.NLMSG_HDRLEN+len(data)))
	binary.NativeEndian.PutUint16(req[4:], uint16(nftMsgType(unix.NFT_MSG_GETRULE)))
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence number
	req = append(req, data...)
	if err := unix.Sendto(fd, req, 0, kernel); err != nil {
		return headOther, err
	}
	buf := make([]byte, 64<<10)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return headOther, err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return headOther, err
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_DONE:
			return headEmpty, nil
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno < 0 {
					return headOther, fmt.Errorf("rule dump: %w", unix.Errno(-errno))
				}
			}
			return headOther, errors.New("rule dump refused")
		case uint16(nftMsgType(unix.NFT_MSG_NEWRULE)):
			if len(m.Data) < 4 {
				return headOther, errors.New("short rule message")
			}
			if isDropRuleMsg(m.Data[4:], v6) {
				return headDrop, nil
			}
			return headOther, nil
		}
	}
	return headOther, errors.New("rule dump returned no rule and no end")
}

// isDropRuleMsg reports whether the attributes of an NFT_MSG_NEWRULE
// message are the rule iptables-nft makes of "-s PREFIX -j DROP": a load
// of the source address (IPv4: offset 12; IPv6: 8, in the network header;
// fewer bytes for a byte-aligned prefix), an optional mask (other
// prefixes), a comparison, an optional counter and the verdict drop.
func isDropRuleMsg(b []byte, v6 bool) bool {
	var names []string
	var payloadOK, dropOK bool
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return false
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_RULE_EXPRESSIONS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != unix.NFTA_LIST_ELEM {
					names = append(names, "?")
					continue
				}
				list.Nested(func(e *netlink.AttributeDecoder) error {
					var name string
					var data []byte
					for e.Next() {
						switch e.Type() {
						case unix.NFTA_EXPR_NAME:
							name = e.String()
						case unix.NFTA_EXPR_DATA:
							data = e.Bytes()
						}
					}
					names = append(names, name)
					switch name {
					case "payload":
						payloadOK = isSaddrLoad(data, v6)
					case "immediate":
						dropOK = isDropVerdict(data)
					}
					return nil
				})
			}
			return nil
		})
	}
	if ad.Err() != nil || !payloadOK || !dropOK {
		return false
	}
	form := strings.Join(names, " ")
	for _, want := range []string{
		"payload cmp counter immediate", "payload bitwise cmp counter immediate",
		"payload cmp immediate", "payload bitwise cmp immediate",
	} {
		if form == want {
			return true
		}
	}
	return false
}

// isSaddrLoad reports whether a payload expression's data loads (part of)
// the source address from the network header.
func isSaddrLoad(b []byte, v6 bool) bool {
	offset, size := uint32(12), uint32(4)
	if v6 {
		offset, size = 8, 16
	}
	var base, off, n uint32
	var have int
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_PAYLOAD_BASE:
			base, have = ad.Uint32(), have|1
		case unix.NFTA_PAYLOAD_OFFSET:
			off, have = ad.Uint32(), have|2
		case unix.NFTA_PAYLOAD_LEN:
			n, have = ad.Uint32(), have|4
		}
	}
	return ad.Err() == nil && have == 7 && base == unix.NFT_PAYLOAD_NETWORK_HEADER &&
		off == offset && n >= 1 && n <= size
}

// isDropVerdict reports whether an immediate expression's data is the
// verdict drop.
func isDropVerdict(b []byte) bool {
	drop := false
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() != unix.NFTA_IMMEDIATE_DATA {
			continue
		}
		ad.Nested(func(d *netlink.AttributeDecoder) error {
			for d.Next() {
				if d.Type() != unix.NFTA_DATA_VERDICT {
					continue
				}
				d.Nested(func(v *netlink.AttributeDecoder) error {
					for v.Next() {
						if v.Type() == unix.NFTA_VERDICT_CODE {
							drop = v.Uint32() == 0 // NF_DROP
						}
					}
					return nil
				})
			}
			return nil
		})
	}
	return ad.Err() == nil && drop
}
