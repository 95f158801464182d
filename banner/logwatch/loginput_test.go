package logwatch

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// TestOpenLogs: logs are read plain or gzip-compressed (told by the magic
// bytes, not the name), from files or standard input ("-"), several as one
// stream whose files' lines never join. A damaged input ends at its last
// complete line; Err then names it and counts the lines before.
func TestOpenLogs(t *testing.T) {
	var pb strings.Builder
	for i := range 20 {
		pb.WriteString(numLine(i))
	}
	plain := []byte(pb.String())
	gzipped := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	gz := gzipped(plain)
	// the first ten lines and half the eleventh, compressed and flushed,
	// then cut off: a copy interrupted at a known place
	lines := bytes.SplitAfter(plain, []byte("\n"))
	var fb bytes.Buffer
	zw := gzip.NewWriter(&fb)
	zw.Write(bytes.Join(lines[:10], nil))
	zw.Write(lines[10][:40])
	if err := zw.Flush(); err != nil {
		t.Fatal(err)
	}
	flushed := bytes.Clone(fb.Bytes())

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plainPath := write("mail.log", plain)
	noSuffix := write("mail.log.1", gz)
	flushedGz := write("flushed.log.gz", flushed)
	headerOnly := write("header.gz", gz[:2])
	badHeader := write("bad.gz", []byte("\x1f\x8bnot really gzip\n"))
	corrupt := write("corrupt.gz", append(bytes.Clone(gz[:20]), make([]byte, 200)...))
	noNL := write("nonl.log", plain[:len(plain)-1])

	tests := []struct {
		name    string
		paths   []string
		stdin   io.Reader
		openErr string // "": opens
		lines   int
		err     string // "": read whole
		inName  string
	}{
		{"plain file", []string{plainPath}, nil, "", 20, "", plainPath},
		{"gzip without .gz in its name", []string{noSuffix}, nil, "", 20, "", noSuffix},
		{"plain standard input", []string{"-"}, bytes.NewReader(plain), "", 20, "", "standard input"},
		{"gzip standard input", []string{"-"}, bytes.NewReader(gz), "", 20, "", "standard input"},
		{"empty standard input", []string{"-"}, strings.NewReader(""), "", 0, "", "standard input"},
		{"gzip truncated mid-line", []string{flushedGz}, nil, "", 10, "reading " + flushedGz + ": gzip data truncated (the file ends early: still being written or copied?); the report covers the 10 complete line(s) before it", flushedGz},
		{"read error on standard input", []string{"-"}, io.MultiReader(bytes.NewReader(plain[:300]), iotest.ErrReader(errors.New("input/output error"))), "", 1,
			"reading standard input: input/output error; the report covers the 1 complete line(s) before it", "standard input"},
		{"only a gzip magic", []string{headerOnly}, nil, headerOnly + ": not a readable gzip file: gzip data truncated", 0, "", ""},
		{"gzip magic, bad header", []string{badHeader}, nil, badHeader + ": not a readable gzip file: gzip data corrupt", 0, "", ""},
		{"corrupt gzip data", []string{corrupt}, nil, "", 0, "reading " + corrupt + ": gzip data corrupt (flate: corrupt input", corrupt},
		{"directory", []string{dir}, nil, "read " + dir + ": is a directory", 0, "", ""},
		{"two files, the first without its last newline", []string{noNL, noSuffix}, nil, "", 40, "", "2 files"},
		{"one of two files truncated", []string{plainPath, flushedGz}, nil, "", 30,
			"reading " + flushedGz + ": gzip data truncated (the file ends early: still being written or copied?); the report covers its complete lines before that, and the other files", "2 files"},
		{"a missing file among others", []string{plainPath, filepath.Join(dir, "nope.log")}, nil, "nope.log: no such file or directory", 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdin := tt.stdin
			if stdin == nil {
				stdin = iotest.ErrReader(errors.New("standard input read unasked"))
			}
			in, err := OpenLogs(tt.paths, stdin)
			if tt.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.openErr) {
					t.Fatalf("OpenLogs: %v, want %q", err, tt.openErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			got, err := io.ReadAll(in)
			if err != nil {
				t.Fatal(err)
			}
			n := bytes.Count(got, []byte("\n"))
			if n != tt.lines || (len(got) > 0 && got[len(got)-1] != '\n') {
				t.Fatalf("read %d lines, want %d:\n%s", n, tt.lines, got)
			}
			for i, l := range bytes.SplitAfter(got, []byte("\n")) {
				if len(l) > 0 && string(l) != numLine(i%20) {
					t.Fatalf("line %d: %q", i, l)
				}
			}
			if err := in.Err(uint64(n)); (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("Err = %v, want %q", err, tt.err)
			}
			if in.Name() != tt.inName {
				t.Errorf("Name = %q, want %q", in.Name(), tt.inName)
			}
		})
	}
}
