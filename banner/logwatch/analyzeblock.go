package logwatch

import (
	"bytes"
	"errors"
	"io"
)

// analyzeBlockSize is the size of the blocks Analyze reads and matches in
// parallel; it is well above maxAnalyzeLine, so a line no longer than that
// always fits in one block with the partial line carried over.
const analyzeBlockSize = 512 << 10

// maxAnalyzeWorkers bounds Analyze's matching goroutines.
const maxAnalyzeWorkers = 8

// analyzeBlock is a block of whole lines (the last one may lack its
// newline at the end of the input) and what matching found in it.
type analyzeBlock struct {
	data []byte
	// long counts the overlong lines skipped: those inside data, and one
	// found by the reader before data that did not fit in a block.
	long uint64
	err  error // the read error after data
	done chan struct{}

	lines                           uint64 // lines counted (not overlong)
	noPrefix, journal, journalOther uint64
	hits                            []lineHit // the lines the ordered pass must see
}

// lineHit is one line that matched, panicked, or may pair a delivery.
type lineHit struct {
	n     uint64 // its number among the block's counted lines, from 1
	out   Outcome
	match Match      // out != NoMatch
	deliv deliveryOp // out == NoMatch
	perr  string     // matching panicked
	line  []byte     // with perr: the line (in data)
}

func (b *analyzeBlock) reset() {
	b.data = b.data[:0]
	b.long, b.err, b.done = 0, nil, nil
	b.lines, b.noPrefix, b.journal, b.journalOther = 0, 0, 0, 0
	clear(b.hits)
	b.hits = b.hits[:0]
}

// readBlocks reads r into blocks of whole lines, each sent to order (the
// sequence) and then to work (the matchers), until the input ends or a
// read error (the block holding the data before it carries it). A line
// longer than a block is skipped as it is read and counted in the next
// block's long. Blocks are taken from free when there are any.
func readBlocks(r io.Reader, free <-chan *analyzeBlock, order, work chan<- *analyzeBlock) {
	get := func() *analyzeBlock {
		select {
		case b := <-free:
			return b
		default:
			return &analyzeBlock{data: make([]byte, 0, analyzeBlockSize)}
		}
	}
	send := func(b *analyzeBlock) {
		b.done = make(chan struct{})
		order <- b
		work <- b
	}
	blk := get()
	var long uint64 // overlong lines skipped since the last block sent
	skipping := false
	for {
		buf := blk.data
		var err error
		for len(buf) < cap(buf) && err == nil {
			var n int
			n, err = r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
		}
		if skipping {
			// Drop the rest of an overlong line, through its newline.
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				buf = buf[:0]
			} else {
				skipping = false
				buf = buf[:copy(buf, buf[i+1:])]
			}
		}
		if err != nil {
			blk.data, blk.long = buf, long
			if !errors.Is(err, io.EOF) {
				blk.err = err
			}
			send(blk)
			return
		}
		if skipping {
			blk.data = buf
			continue
		}
		i := bytes.LastIndexByte(buf, '\n')
		if i < 0 {
			// A whole block without a newline: an overlong line.
			long++
			skipping = true
			blk.data = buf[:0]
			continue
		}
		next := get()
		next.data = append(next.data[:0], buf[i+1:]...)
		blk.data, blk.long = buf[:i+1], long
		long = 0
		send(blk)
		blk = next
	}
}

// match matches the block's lines with m, as Analyze's loop over them would,
// but leaves what depends on the lines before (the delivery table, the
// counts, line numbers) to the ordered pass: it records the lines that pass
// needs in hits.
func (b *analyzeBlock) match(m *Matcher, je *journalEntry) {
	data := b.data
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		// As bufio.Reader.ReadSlice with a buffer of maxAnalyzeLine
		// would: a line and its newline must fit, and a last line
		// without one must leave room for it.
		if len(line) > maxAnalyzeLine || (len(line) == maxAnalyzeLine && line[len(line)-1] != '\n') {
			b.long++
			continue
		}
		b.lines++
		var (
			res      Match
			out      Outcome
			sl       syslogLine
			prefixed bool
			perr     string
		)
		cur := Record{Line: line}
		if isJSONLine(line) && parseJournalEntry(trimEOL(line), je) == nil {
			b.journal++
			if !isPostfixIdentifier(je.Identifier) || !je.HasMessage {
				b.journalOther++
				continue
			}
			cur = Record{Identifier: je.Identifier, PID: je.PID, Time: je.Time, Message: je.Message, Cursor: string(je.Cursor)}
			res, out, prefixed, perr = safeMatchRecord(m, &cur)
		} else {
			res, out, sl, prefixed, perr = safeMatchLine(m, line)
		}
		if perr != "" {
			b.hits = append(b.hits, lineHit{n: b.lines, perr: perr, line: line})
			continue
		}
		if out == NoMatch && !prefixed {
			b.noPrefix++
		}
		if out != NoMatch {
			b.hits = append(b.hits, lineHit{n: b.lines, out: out, match: res})
			continue
		}
		if cur.Line != nil && !prefixed {
			continue // a raw line without its syslog split is no delivery
		}
		var op deliveryOp
		op.read(m, &cur, sl)
		if op.kind != opNone {
			b.hits = append(b.hits, lineHit{n: b.lines, deliv: op})
		}
	}
}
