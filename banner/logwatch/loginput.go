package logwatch

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// logInput is one log opened for one pass: a file, or standard input for
// "-", plain or gzip-compressed (told by the magic bytes, whatever the
// name: logrotate's mail.log.2.gz, or `zcat`-less pipes). A read error
// (a truncated or corrupt gzip file) ends the input at the last complete
// line, so the report covers what was read; Err then describes it.
type logInput struct {
	name   string // the path, or "standard input"
	gz     bool
	src    io.Reader // the file or stdin, decompressed
	closer io.Closer // the file, or nil

	pending []byte // read from src, not passed on yet: a partial line (in buf)
	buf     []byte // maxPending+readChunk bytes, made on the first Read
	eof     bool
	err     error // the read error that ended the input early
}

// LogInputs reads several logs one after the other as one stream (the
// ban simulation orders events by time, so the order of the files does not
// matter), ending a last line that lacks its newline so that two files'
// lines never join.
type LogInputs struct {
	ins    []*logInput
	cur    int
	lastNL bool // the last byte passed on was a newline (or none was)
}

// OpenLogs opens paths for one pass (`banner test-log`, Analyze): each a
// file, or stdin for "-", plain or gzip-compressed (told by the magic
// bytes); see LogInputs. An error names the file.
func OpenLogs(paths []string, stdin io.Reader) (*LogInputs, error) {
	l := &LogInputs{lastNL: true}
	for _, p := range paths {
		in, err := openLog(p, stdin)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.ins = append(l.ins, in)
	}
	return l, nil
}

func (l *LogInputs) Read(p []byte) (int, error) {
	for l.cur < len(l.ins) && len(p) > 0 {
		n, err := l.ins[l.cur].Read(p)
		if n > 0 {
			l.lastNL = p[n-1] == '\n'
			return n, nil
		}
		if !errors.Is(err, io.EOF) {
			return 0, err
		}
		l.cur++
		if !l.lastNL {
			p[0], l.lastNL = '\n', true
			return 1, nil
		}
	}
	return 0, io.EOF
}

// Name names the input for messages: the file, or "N files".
func (l *LogInputs) Name() string {
	if len(l.ins) == 1 {
		return l.ins[0].name
	}
	return fmt.Sprintf("%d files", len(l.ins))
}

// Close closes every file.
func (l *LogInputs) Close() error {
	var errs []error
	for _, in := range l.ins {
		errs = append(errs, in.Close())
	}
	return errors.Join(errs...)
}

// Err describes the read errors that ended inputs early, if any: with one
// input as logInput.Err does, with several naming each damaged file.
func (l *LogInputs) Err(lines uint64) error {
	if len(l.ins) == 1 {
		return l.ins[0].Err(lines)
	}
	var errs []error
	for _, in := range l.ins {
		if in.err != nil {
			errs = append(errs, fmt.Errorf("%w; the report covers its complete lines before that, and the other files", in.readError(in.err)))
		}
	}
	return errors.Join(errs...)
}

// maxPending bounds a partial line held back; past it the bytes are passed
// on (Analyze skips overlong lines itself).
const maxPending = 128 << 10

// readChunk is the least a logInput reads from its source at once.
const readChunk = 64 << 10

func openLog(path string, stdin io.Reader) (*logInput, error) {
	in := &logInput{name: path, src: stdin}
	if path == "-" {
		in.name = "standard input"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err // *PathError: names the file
		}
		in.src, in.closer = f, f
	}
	br := bufio.NewReaderSize(in.src, 64<<10)
	in.src = br
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		in.Close()
		return nil, in.readError(err)
	}
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			in.Close()
			return nil, fmt.Errorf("%s: not a readable gzip file: %s", in.name, gzipProblem(err))
		}
		in.gz, in.src = true, zr
	}
	return in, nil
}

// Read passes on whole lines; see logInput.
func (in *logInput) Read(p []byte) (int, error) {
	for {
		n := bytes.LastIndexByte(in.pending, '\n') + 1
		if in.eof || len(in.pending) > maxPending {
			n = len(in.pending) // the last line may lack its newline
		}
		if n > 0 {
			k := copy(p, in.pending[:n])
			in.pending = in.pending[k:]
			return k, nil
		}
		if in.eof {
			return 0, io.EOF
		}
		// The partial line goes to the front of buf (at most maxPending
		// bytes: more were passed on), the source is read after it.
		if in.buf == nil {
			in.buf = make([]byte, maxPending+readChunk)
		}
		in.pending = in.buf[:copy(in.buf, in.pending)]
		m, err := in.src.Read(in.buf[len(in.pending):])
		in.pending = in.buf[:len(in.pending)+m]
		switch {
		case errors.Is(err, io.EOF):
			in.eof = true
		case err != nil:
			// Drop the partial line: half a line could match half.
			in.pending = in.pending[:bytes.LastIndexByte(in.pending, '\n')+1]
			in.eof, in.err = true, err
		}
	}
}

func (in *logInput) Close() error {
	if in.closer == nil {
		return nil
	}
	return in.closer.Close()
}

// Err describes the read error that ended the input early, if any, with
// the number of lines read before it; nil when the input was read whole.
func (in *logInput) Err(lines uint64) error {
	if in.err == nil {
		return nil
	}
	return fmt.Errorf("%w; the report covers the %d complete line(s) before it", in.readError(in.err), lines)
}

func (in *logInput) readError(err error) error {
	if in.gz {
		return fmt.Errorf("reading %s: %s", in.name, gzipProblem(err))
	}
	if errors.As(err, new(*fs.PathError)) {
		return err // "read /var/log/mail.log: input/output error"
	}
	return fmt.Errorf("reading %s: %w", in.name, err)
}

// gzipProblem says what a gzip reader's error means for an admin.
func gzipProblem(err error) string {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "gzip data truncated (the file ends early: still being written or copied?)"
	}
	if errors.As(err, new(*fs.PathError)) {
		return err.Error()
	}
	return "gzip data corrupt (" + err.Error() + ")"
}
